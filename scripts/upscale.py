"""Same as ``sr-adapt-upscale``: see :mod:`sr_adapt.tasks.upscale`."""

from sr_adapt.tasks.upscale import main

if __name__ == "__main__":
    main()
