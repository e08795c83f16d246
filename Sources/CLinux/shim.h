// Linux headers that Swift's Glibc module does not include.
#include <sys/xattr.h>
#include <sys/sysmacros.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <fcntl.h>
#include <unistd.h>

static inline unsigned long long shadowmover_makedev(unsigned int major, unsigned int minor) { return makedev(major, minor); }
