"""The channel model: channel spaces, coupled-channel classes, groups and their members, nodes."""
