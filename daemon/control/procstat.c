/* ferryd: process_* metrics (see procstat.h), read from getrusage(2),
 * and /proc/self, as the Prometheus client libraries do. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "control/procstat.h"

static void head(struct ferry_buf *out, const char *name, const char *type, const char *help)
{
    ferry_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Resident pages from /proc/self/statm; -1 when unknown. */
static long long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return -1;
    long long size, pages;
    int n = fscanf(f, "%lld %lld", &size, &pages);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? pages * page : -1;
}

/* Entries of /proc/self/fd (without the one counting them); -1 when unknown. */
static long long open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return -1;
    long long n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n - 1;
}

/* The soft limit of open files from /proc/self/limits (as the Prometheus
 * clients read it, and no system call the unit's filter may refuse);
 * -1 when unknown, -2 for unlimited. */
static long long max_fds(void)
{
    FILE *f = fopen("/proc/self/limits", "re");
    if (!f)
        return -1;
    char line[256];
    long long v = -1;
    while (fgets(line, sizeof(line), f)) {
        char soft[64];
        if (sscanf(line, "Max open files %63s", soft) == 1) {
            v = soft[0] == 'u' ? -2 : strtoll(soft, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

void ferry_procstat_render(double start_unix, struct ferry_buf *out)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        head(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
        ferry_buf_printf(out, "process_cpu_seconds_total %.6f\n", cpu);
    }
    long long rss = resident_bytes();
    if (rss >= 0) {
        head(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        ferry_buf_printf(out, "process_resident_memory_bytes %lld\n", rss);
    }
    long long fds = open_fds();
    if (fds >= 0) {
        head(out, "process_open_fds", "gauge", "Number of open file descriptors.");
        ferry_buf_printf(out, "process_open_fds %lld\n", fds);
    }
    long long maxf = max_fds();
    if (maxf != -1) {
        head(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        if (maxf == -2)
            ferry_buf_puts(out, "process_max_fds +Inf\n");
        else
            ferry_buf_printf(out, "process_max_fds %lld\n", maxf);
    }
    head(out, "process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.");
    ferry_buf_printf(out, "process_start_time_seconds %.3f\n", start_unix);
}
