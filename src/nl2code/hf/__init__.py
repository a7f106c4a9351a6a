"""Interoperability with Hugging Face ``transformers`` checkpoint folders (``nl2code hf``).

Import (LLaMA family with GQA/biases/rope scaling, Mistral, Qwen2, Mixtral, CodeGen) and export
(Llama, Qwen2, Mixtral, CodeGen) with streamed safetensors I/O and the checkpoint's own tokenizer.
Nothing here needs ``transformers`` itself; only the tests compare against it.
"""
