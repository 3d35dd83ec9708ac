"""Small applications on a user-level stack (run them under `xdpstack run`)."""
