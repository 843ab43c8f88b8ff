/* agent_overhead_tp - instantiates the benchmark's LTTng-UST probes. */
#define LTTNG_UST_TRACEPOINT_CREATE_PROBES
#define LTTNG_UST_TRACEPOINT_DEFINE
#include "agent_overhead_tp.h"
