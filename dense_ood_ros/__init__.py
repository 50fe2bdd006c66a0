"""Dense open-set recognition (LDN-121 + RealNVP outliers) for ROS 2 perception."""
