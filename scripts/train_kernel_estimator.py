"""Same as ``sr-adapt-train-kernel-estimator``: see :mod:`sr_adapt.tasks.train_kernel_estimator`."""

from sr_adapt.tasks.train_kernel_estimator import main

if __name__ == "__main__":
    main()
