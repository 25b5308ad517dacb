/* What waking a thread on another CPU costs after it has slept a given time, down to 0.5 µs.
 *
 * The Python measurement (experiments.gil_handoff) cannot make a sleep shorter than about 17 µs:
 * its sleeper's sleep always includes the waker's own wake-up. Here the sleeper (CPU 1) waits on a
 * condition variable, as a GIL waiter does, and the waker (CPU 0) signals it SLEPT_US after it
 * went to sleep, spinning in C meanwhile. Printed: the waker's time in pthread_cond_signal
 * (median) and the quantiles of the time from the signal until the sleeper runs.
 *
 *   gcc -O2 -pthread -o /tmp/wake_probe tools/gil_replica/wake_probe.c
 *   /tmp/wake_probe 1 3 5 17 100 500         (SLEPT_US ...)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROUNDS 2000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int signalled = 0;
static _Atomic double asleep_at;
static atomic_long progress;        /* 2r+1: asleep in round r; 2r+2: ran after round r's signal */
static double signal_at;
static double latency[ROUNDS], signal_cost[ROUNDS];

static void *sleeper(void *arg) {
    (void)arg;
    pin(1);
    for (long r = 0; r < ROUNDS; r++) {
        pthread_mutex_lock(&mutex);
        atomic_store(&asleep_at, now());
        atomic_store(&progress, 2 * r + 1);
        while (!signalled)
            pthread_cond_wait(&cond, &mutex);
        signalled = 0;
        pthread_mutex_unlock(&mutex);
        latency[r] = now() - signal_at;
        atomic_store(&progress, 2 * r + 2);
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *sorted, double q) {
    return sorted[(int)(q * (ROUNDS - 1))] * 1e6;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SLEPT_US [SLEPT_US ...]\n", argv[0]);
        return 2;
    }
    pin(0);
    for (int k = 1; k < argc; k++) {
        double slept = atof(argv[k]) * 1e-6;
        pthread_t t;
        atomic_store(&progress, 0);
        pthread_create(&t, NULL, sleeper, NULL);
        for (long r = 0; r < ROUNDS; r++) {
            while (atomic_load(&progress) != 2 * r + 1) {
            }
            double since = atomic_load(&asleep_at);
            while (now() - since < slept) {
            }
            pthread_mutex_lock(&mutex);         /* free once the sleeper waits on the condition */
            signalled = 1;
            signal_at = now();
            pthread_cond_signal(&cond);
            signal_cost[r] = now() - signal_at;
            pthread_mutex_unlock(&mutex);
            while (atomic_load(&progress) < 2 * r + 2) {
            }
        }
        pthread_join(t, NULL);
        qsort(latency, ROUNDS, sizeof(double), by_value);
        qsort(signal_cost, ROUNDS, sizeof(double), by_value);
        printf("slept %6.1f us: waker %5.1f us | latency 5%% %5.1f  25%% %5.1f  50%% %5.1f  "
               "75%% %5.1f  95%% %5.1f us\n", slept * 1e6, quantile(signal_cost, 0.5),
               quantile(latency, 0.05), quantile(latency, 0.25), quantile(latency, 0.5),
               quantile(latency, 0.75), quantile(latency, 0.95));
        fflush(stdout);
    }
    return 0;
}
