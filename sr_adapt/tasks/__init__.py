"""The commands, one module each (``run(cfg) -> result`` and a Hydra ``main``); nothing in the
library imports them."""
