#ifndef TUPP_NET_H
#define TUPP_NET_H

#include <stdint.h>
#include <sys/types.h>

#endif
