/*
 * agent_overhead_tp - the LTTng-UST tracepoint the agent benchmark compares
 * against: the same fields as the agent's START event (task id, thread id;
 * LTTng adds its own timestamp as the agent does).
 */
#undef LTTNG_UST_TRACEPOINT_PROVIDER
#define LTTNG_UST_TRACEPOINT_PROVIDER taskwatch_bench

#undef LTTNG_UST_TRACEPOINT_INCLUDE
#define LTTNG_UST_TRACEPOINT_INCLUDE "agent_overhead_tp.h"

#if !defined(AGENT_OVERHEAD_TP_H) || defined(LTTNG_UST_TRACEPOINT_HEADER_MULTI_READ)
#define AGENT_OVERHEAD_TP_H

#include <stdint.h>

#include <lttng/tracepoint.h>

LTTNG_UST_TRACEPOINT_EVENT(
    taskwatch_bench, task_start,
    LTTNG_UST_TP_ARGS(uint64_t, task, uint64_t, thread),
    LTTNG_UST_TP_FIELDS(lttng_ust_field_integer(uint64_t, task, task)
                            lttng_ust_field_integer(uint64_t, thread, thread)))

#endif /* AGENT_OVERHEAD_TP_H */

#include <lttng/tracepoint-event.h>
