// CTuppSys: the few system interfaces Swift cannot reach directly — raw syscalls
// without a glibc wrapper (openat2, pidfd_*), variadic ioctl/prctl calls, and
// kernel structs Swift imports awkwardly. Each function says why it is C.
#ifndef CTUPPSYS_H
#define CTUPPSYS_H

#include "tupp_sys.h"
#include "tupp_storage.h"
#include "tupp_net.h"
#include "tupp_runtime.h"
#include "tupp_cgroup.h"

#endif
