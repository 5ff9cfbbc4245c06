/* asynccore: how many CPUs this process may actually use.
 *
 * The number of online CPUs overstates it in the two places a proxy is
 * commonly run: under `taskset`/systemd CPUAffinity= (the affinity mask) and
 * in a container with a CPU quota (cgroup v2 cpu.max, Kubernetes limits).
 * More workers than usable CPUs only adds context switches, so `auto` means
 * the smallest of the three, like Rust's available_parallelism and Go 1.25's
 * GOMAXPROCS.
 */
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "asynccore/runtime.h"

/* CPUs the quota allows, rounded up; 0 when there is no quota (or no
 * cgroup v2 at this path). Only the process's own cgroup is read: a quota on
 * an ancestor also bounds it, but containers put theirs at the leaf. */
static unsigned quota_cpus(const char *cpu_max)
{
    FILE *f = fopen(cpu_max, "re");
    if (!f)
        return 0;
    char quota[32];
    unsigned long long period = 0, q = 0;
    int n = fscanf(f, "%31s %llu", quota, &period);
    fclose(f);
    if (n != 2 || period == 0 || sscanf(quota, "%llu", &q) != 1) /* "max": none */
        return 0;
    unsigned long long cpus = (q + period - 1) / period;
    return cpus == 0 ? 1 : cpus > 4096 ? 4096 : (unsigned)cpus;
}

unsigned ac_available_parallelism(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = online > 0 ? (unsigned)online : 1;
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0 &&
        (unsigned)CPU_COUNT(&set) < n)
        n = (unsigned)CPU_COUNT(&set);
    unsigned q = quota_cpus("/sys/fs/cgroup/cpu.max");
    if (q > 0 && q < n)
        n = q;
#endif
    return n;
}
