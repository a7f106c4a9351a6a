"""Small per-utility tables the Bash template metric uses to type arguments (project-written).

They cover the utilities that dominate NL2Bash (find, xargs, grep, sort, awk, sed, cut, head, ...).
A utility missing here still gets a template: its flags are kept, its option arguments are not
recognised (a following word becomes a positional argument) and positionals get generic types.

Semantic types used in templates: ``Path`` (find start points), ``File``, ``Directory``, ``Regex``
(patterns, globs, regular expressions), ``Script`` (sed/awk/perl/sh programs), ``String`` (free text),
``Format`` (printf/date/-printf formats), ``Number``, ``Size``, ``Timespan``, ``DateTime``,
``Permission``, ``Username``, ``Groupname``, ``Owner`` (``user[:group]``), ``Delimiter``, ``Fields``
(cut/sort key lists), ``Variable`` (``$X``/``${X}`` or a variable name), ``Utility`` (a command name
used as data, e.g. ``which ls``), ``Host``, ``Value`` (any other option argument). Closed-vocabulary
arguments are kept verbatim (``find -type f``, ``-regextype posix-egrep``, signals, git subcommands).
"""

from __future__ import annotations

# find primaries taking one argument -> the argument's type ("=" keeps it verbatim).
# Types prefixed with "±" keep a leading +/- sign of the argument (e.g. -mtime +7 -> +Timespan).
FIND_ARG_PRIMARIES: dict[str, str] = {
    "-name": "Regex", "-iname": "Regex", "-path": "Regex", "-ipath": "Regex", "-wholename": "Regex",
    "-iwholename": "Regex", "-regex": "Regex", "-iregex": "Regex", "-lname": "Regex", "-ilname": "Regex",
    "-mtime": "±Timespan", "-atime": "±Timespan", "-ctime": "±Timespan", "-mmin": "±Timespan",
    "-amin": "±Timespan", "-cmin": "±Timespan", "-used": "±Timespan",
    "-newer": "File", "-anewer": "File", "-cnewer": "File", "-samefile": "File",
    "-fprint": "File", "-fprint0": "File", "-fls": "File",
    "-size": "±Size", "-perm": "±Permission", "-user": "Username", "-group": "Groupname",
    "-uid": "±Number", "-gid": "±Number", "-links": "±Number", "-inum": "Number",
    "-maxdepth": "Number", "-mindepth": "Number", "-printf": "Format",
    "-type": "=", "-xtype": "=", "-fstype": "=", "-regextype": "=", "-D": "=", "-O": "=",
}  # fmt: skip
FIND_EXEC = frozenset(["-exec", "-execdir", "-ok", "-okdir"])
FIND_OPERATORS = {
    "!": "!", "-not": "!", "-a": "-and", "-and": "-and", "-o": "-or", "-or": "-or",
    "(": "(", ")": ")", ",": ",",
}  # fmt: skip

# Utilities that run another command given after their own options.
WRAPPERS = frozenset(
    ["sudo", "xargs", "nohup", "time", "nice", "exec", "watch", "timeout", "command", "builtin", "env",
     "stdbuf", "ionice", "parallel", "strace", "caffeinate"]
)  # fmt: skip
# Utilities where a numeric flag is a count (head -5 = head -n 5); elsewhere "-9" names an option.
COUNT_FLAGS = frozenset(["head", "tail", "grep", "egrep", "fgrep", "zgrep", "diff", "fold", "pr"])
# Utilities whose first positional argument is a closed-vocabulary subcommand (kept verbatim).
SUBCOMMANDS = frozenset(
    ["git", "svn", "hg", "yum", "apt", "apt-get", "brew", "pip", "npm", "docker", "systemctl",
     "service", "tmux", "ip", "openssl", "launchctl", "port", "gem", "conda"]
)  # fmt: skip
# Utilities whose options are words after a single dash (never split into one-letter flags).
SINGLE_DASH_LONG = frozenset(["find", "java", "javac", "gcc", "g++", "clang", "ffmpeg", "convert", "xmllint"])

# utility -> {option: type of its argument}; "=" keeps the argument verbatim. Options not listed take
# no argument. "*" lists options shared by every utility.
OPTION_ARGS: dict[str, dict[str, str]] = {
    "*": {"--help": "", "--version": ""},
    "head": {"-n": "Number", "-c": "Size", "--lines": "Number", "--bytes": "Size"},
    "tail": {"-n": "Number", "-c": "Size", "--lines": "Number", "--bytes": "Size", "-s": "Number",
             "--pid": "Number"},
    "grep": {"-e": "Regex", "-f": "File", "-m": "Number", "-A": "Number", "-B": "Number", "-C": "Number",
             "--include": "Regex", "--exclude": "Regex", "--exclude-dir": "Regex", "-d": "=", "-D": "=",
             "--color": "=", "--colour": "=", "--regexp": "Regex", "--file": "File",
             "--max-count": "Number", "--binary-files": "="},
    "xargs": {"-I": "=", "-i": "=", "-n": "Number", "-P": "Number", "-L": "Number", "-l": "Number",
              "-d": "Delimiter", "-E": "String", "-s": "Number", "-a": "File", "--max-args": "Number",
              "--max-procs": "Number", "--delimiter": "Delimiter", "--replace": "="},
    "sort": {"-k": "Fields", "-t": "Delimiter", "-o": "File", "-S": "Size", "-T": "Directory",
             "--key": "Fields", "--field-separator": "Delimiter", "--parallel": "Number",
             "--buffer-size": "Size", "--output": "File"},
    "cut": {"-d": "Delimiter", "-f": "Fields", "-c": "Fields", "-b": "Fields", "--delimiter": "Delimiter",
            "--fields": "Fields", "--output-delimiter": "Delimiter"},
    "awk": {"-F": "Delimiter", "-v": "Value", "-f": "File"},
    "sed": {"-e": "Script", "-f": "File", "--expression": "Script"},
    "perl": {"-e": "Script", "-E": "Script", "-n": "", "-p": ""},
    "tar": {"-f": "File", "-C": "Directory", "--exclude": "Regex", "-T": "File", "--file": "File",
            "--directory": "Directory", "-X": "File"},
    "split": {"-l": "Number", "-b": "Size", "-n": "Number", "-a": "Number", "-C": "Size",
              "--lines": "Number", "--bytes": "Size", "--additional-suffix": "String"},
    "du": {"-d": "Number", "--max-depth": "Number", "-B": "Size", "--exclude": "Regex", "-t": "Size"},
    "ls": {"-I": "Regex", "--ignore": "Regex", "-w": "Number", "--sort": "=", "--time-style": "=",
           "--color": "=", "--format": "="},
    "cp": {"-t": "Directory", "--target-directory": "Directory", "-S": "String", "--suffix": "String"},
    "mv": {"-t": "Directory", "--target-directory": "Directory", "-S": "String", "--suffix": "String"},
    "ln": {"-t": "Directory", "--target-directory": "Directory", "-S": "String"},
    "mkdir": {"-m": "Permission", "--mode": "Permission"},
    "touch": {"-d": "DateTime", "-t": "DateTime", "-r": "File", "--date": "DateTime", "--reference": "File"},
    "date": {"-d": "DateTime", "-r": "File", "--date": "DateTime", "-s": "DateTime", "--set": "DateTime"},
    "ssh": {"-p": "Number", "-i": "File", "-l": "Username", "-o": "String", "-L": "String", "-R": "String",
            "-F": "File", "-D": "Number", "-W": "String", "-b": "Host", "-c": "=", "-e": "=", "-m": "="},
    "scp": {"-P": "Number", "-i": "File", "-o": "String", "-F": "File", "-l": "Number"},
    "rsync": {"-e": "String", "--exclude": "Regex", "--include": "Regex", "--exclude-from": "File",
              "--include-from": "File", "--rsh": "String", "--files-from": "File", "--backup-dir": "Directory"},
    "ps": {"-o": "Format", "-p": "Number", "-u": "Username", "-U": "Username", "-C": "Utility", "-G": "Groupname",
           "--pid": "Number", "--ppid": "Number", "--sort": "=", "-t": "String"},
    "kill": {"-s": "=", "-n": "="},
    "nice": {"-n": "Number", "--adjustment": "Number"},
    "uniq": {"-f": "Number", "-s": "Number", "-w": "Number"},
    "paste": {"-d": "Delimiter", "--delimiters": "Delimiter"},
    "join": {"-t": "Delimiter", "-1": "Number", "-2": "Number", "-o": "Format", "-e": "String",
             "-j": "Number", "-a": "Number", "-v": "Number"},
    "column": {"-s": "Delimiter", "-c": "Number", "-o": "Delimiter"},
    "fold": {"-w": "Number", "--width": "Number"},
    "nl": {"-w": "Number", "-s": "Delimiter", "-b": "=", "-n": "=", "-v": "Number", "-i": "Number"},
    "od": {"-t": "=", "-A": "=", "-N": "Size", "-j": "Size", "-w": "Number"},
    "seq": {"-f": "Format", "-s": "Delimiter", "--separator": "Delimiter", "--format": "Format"},
    "mount": {"-t": "=", "-o": "Value", "-L": "String", "-U": "String"},
    "df": {"-t": "=", "-x": "=", "-B": "Size", "--type": "=", "--output": "="},
    "read": {"-p": "String", "-t": "Number", "-n": "Number", "-N": "Number", "-d": "Delimiter",
             "-a": "Variable", "-u": "Number"},
    "basename": {"-s": "String", "--suffix": "String"},
    "mktemp": {"-p": "Directory", "--suffix": "String", "--tmpdir": "Directory"},
    "ping": {"-c": "Number", "-i": "Number", "-W": "Number", "-w": "Number", "-s": "Size", "-I": "=",
             "-t": "Number"},
    "curl": {"-o": "File", "-u": "String", "-d": "String", "-H": "String", "-X": "=", "-A": "String",
             "-T": "File", "--output": "File", "--data": "String", "--header": "String", "-e": "String",
             "-m": "Number", "--max-time": "Number", "-w": "Format"},
    "wget": {"-O": "File", "-P": "Directory", "-o": "File", "-t": "Number", "-T": "Number",
             "--output-document": "File", "-U": "String"},
    "screen": {"-S": "String", "-r": "String", "-x": "String", "-X": "String"},
    "tmux": {"-t": "String", "-s": "String", "-n": "String", "-c": "Directory", "-S": "File"},
    "crontab": {"-u": "Username"},
    "su": {"-c": "Script", "-s": "File", "-g": "Groupname"},
    "sh": {"-c": "Script"}, "bash": {"-c": "Script"}, "zsh": {"-c": "Script"},
    "watch": {"-n": "Number", "--interval": "Number", "-d": ""},
    "timeout": {"-s": "=", "-k": "Timespan", "--signal": "=", "--kill-after": "Timespan"},
    "sudo": {"-u": "Username", "-g": "Groupname", "-C": "Number", "-p": "String"},
    "parallel": {"-j": "Number", "-S": "Host", "--jobs": "Number", "-n": "Number", "-N": "Number",
                 "-I": "=", "--colsep": "Delimiter"},
    "top": {"-p": "Number", "-u": "Username", "-n": "Number", "-d": "Number", "-b": "", "-o": "="},
    "chown": {"--reference": "File", "--from": "Owner"},
    "chmod": {"--reference": "File"},
    "tr": {},
    "gzip": {"-S": "String", "--suffix": "String"},
    "zip": {"-x": "Regex", "-i": "Regex", "-P": "String", "-d": "=", "-b": "Directory"},
    "cpio": {"-H": "=", "-F": "File", "-D": "Directory", "-O": "File", "-I": "File"},
    "diff": {"-U": "Number", "-C": "Number", "-x": "Regex", "--exclude": "Regex", "-X": "File",
             "-W": "Number", "--width": "Number"},
    "comm": {"--output-delimiter": "Delimiter"},
    "tee": {}, "wc": {}, "cat": {}, "rev": {}, "tac": {},
    "dig": {"-p": "Number", "-t": "=", "-x": "Host", "-f": "File"},
    "stat": {"-c": "Format", "--format": "Format", "--printf": "Format", "-f": ""},
    "pstree": {}, "history": {}, "env": {"-u": "Variable", "--unset": "Variable"},
    "ionice": {"-c": "Number", "-n": "Number", "-p": "Number"},
    "dd": {},
    "md5sum": {}, "sha1sum": {}, "sha256sum": {},
    "ifconfig": {}, "hostname": {},
    "chgrp": {"--reference": "File"},
    "rm": {}, "rmdir": {}, "cd": {}, "pushd": {}, "popd": {},
    "less": {"-x": "Number", "-p": "Regex", "-P": "String", "-y": "Number", "-z": "Number"},
    "more": {"-n": "Number"},
    "pgrep": {"-u": "Username", "-U": "Username", "-G": "Groupname", "-P": "Number", "-s": "Number",
              "-d": "Delimiter"},
    "pkill": {"-u": "Username", "-U": "Username", "-G": "Groupname", "-P": "Number", "--signal": "="},
    "lsof": {"-p": "Number", "-u": "Username", "-i": "String", "-c": "Utility", "+D": "Directory",
             "-d": "String"},
    "shred": {"-n": "Number", "-s": "Size", "--iterations": "Number"},
    "fmt": {"-w": "Number"},
    "pr": {"-w": "Number", "-l": "Number", "-s": "Delimiter", "-h": "String"},
}  # fmt: skip

# utility -> types of its positional arguments in order (the last one repeats).
POSITIONAL: dict[str, list[str]] = {
    "grep": ["Regex", "File"], "egrep": ["Regex", "File"], "fgrep": ["Regex", "File"],
    "zgrep": ["Regex", "File"], "pgrep": ["Regex"], "pkill": ["Regex"], "killall": ["Utility"],
    "sed": ["Script", "File"], "awk": ["Script", "File"], "gawk": ["Script", "File"],
    "chmod": ["Permission", "File"], "chown": ["Owner", "File"], "chgrp": ["Groupname", "File"],
    "echo": ["String"], "printf": ["Format", "String"], "tr": ["String"],
    "cd": ["Directory"], "mkdir": ["Directory"], "rmdir": ["Directory"], "pushd": ["Directory"],
    "sleep": ["Timespan"], "kill": ["Number"], "seq": ["Number"],
    "su": ["Username"], "id": ["Username"], "groups": ["Username"], "finger": ["Username"],
    "which": ["Utility"], "type": ["Utility"], "man": ["Utility"], "whatis": ["Utility"],
    "apropos": ["String"], "info": ["Utility"], "whereis": ["Utility"],
    "read": ["Variable"], "ssh": ["Host", "String"], "ping": ["Host"], "dig": ["Host"],
    "alias": ["String"], "expr": ["String"], "bc": ["File"], "yes": ["String"],
    "date": ["Format"], "cal": ["Number"], "du": ["File"], "basename": ["File", "String"],
}  # fmt: skip
# With one of these options given, the script/pattern positional moves into the option.
PATTERN_OPTIONS: dict[str, frozenset[str]] = {
    "grep": frozenset(["-e", "-f", "--regexp", "--file"]), "egrep": frozenset(["-e", "-f"]),
    "fgrep": frozenset(["-e", "-f"]), "zgrep": frozenset(["-e", "-f"]),
    "sed": frozenset(["-e", "-f", "--expression"]), "awk": frozenset(["-f"]), "gawk": frozenset(["-f"]),
}  # fmt: skip
# Arguments kept verbatim wherever they appear.
VERBATIM_ARGS = frozenset(["{}", "-", "/dev/null", "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/zero",
                           "/dev/random", "/dev/urandom", "/dev/tty"])  # fmt: skip
