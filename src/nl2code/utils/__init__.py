"""Small shared helpers: device and precision selection, seeding and RNG state capture."""
