"""Thin rclpy layer: message conversions, the node base class and the nodes."""
