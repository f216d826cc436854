#ifndef TUPP_STORAGE_H
#define TUPP_STORAGE_H

#include <stdint.h>
#include <sys/types.h>

#endif
