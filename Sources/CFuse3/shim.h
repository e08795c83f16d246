// libfuse 3 (Debian: libfuse3-dev), for the CFuse shim; Swift code does not import it.
#define FUSE_USE_VERSION 31
#include <fuse.h>
