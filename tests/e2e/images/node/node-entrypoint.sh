#!/bin/sh
# Docker mounts /sys and the cgroup v1 hierarchies read-only in a container
# that is not --privileged (which this host refuses): dockerd needs them
# writable to create its own containers' cgroups.
set -eu
mount -o remount,rw /sys
for hierarchy in /sys/fs/cgroup/*; do
    # read-only bind mounts: only a bind remount changes their flag
    if mountpoint -q "$hierarchy"; then mount -o remount,bind,rw "$hierarchy"; fi
done
# The node's API on the test bridge (tests reach each engine there), and the
# local socket for `docker` inside the node.
exec dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 \
    --storage-driver=overlay2 --log-level=warn "$@"
