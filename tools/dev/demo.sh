#!/usr/bin/env bash
# Build drover and run the demo runner: every capability, end to end, in seconds.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ninja -C "$BUILD_DIR" tools/drover-demo/drover-demo tools/drover/drover >/dev/null
exec "$BUILD_DIR/tools/drover-demo/drover-demo" "$@"
