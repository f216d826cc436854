#ifndef TUPP_RUNTIME_H
#define TUPP_RUNTIME_H

#include <stdint.h>
#include <sys/types.h>

#endif
