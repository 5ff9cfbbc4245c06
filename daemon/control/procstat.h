/* ferryd: the standard process_* metrics of Prometheus client libraries. */
#ifndef FERRY_PROCSTAT_H
#define FERRY_PROCSTAT_H

#include "buf.h"

/* Appends process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds, process_max_fds and process_start_time_seconds (from
 * start_unix) in the text exposition format. A value that cannot be read
 * is left out, never made up. */
void ferry_procstat_render(double start_unix, struct ferry_buf *out);

#endif
