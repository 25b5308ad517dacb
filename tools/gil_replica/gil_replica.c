/* CPython 3.11's GIL protocol without the interpreter: what the hand-off alone costs on a machine.
 *
 * Two threads, pinned to CPUs 0 and 1, loop over "held" work (a spin while holding the GIL) and
 * "free" work (a spin without it). The GIL is CPython 3.11's (Python/ceval_gil.h): a flag guarded
 * by a mutex, a condition variable to sleep on with a 5 ms timeout, a signal at every release.
 * Comparing its two-thread rate with Python's on the same held and free lengths separates what the
 * protocol and the machine's wake-ups cost from what the interpreter adds.
 *
 *   gcc -O2 -pthread -o /tmp/gil_replica tools/gil_replica/gil_replica.c
 *   /tmp/gil_replica HELD_US FREE_US [HELD_US FREE_US ...]
 *   J=0.2 M=1.5 /tmp/gil_replica 8 17      durations uniform in [1-J, 1+J] x nominal, and M µs
 *                                          more held work after taking the GIL from the other thread
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void spin(double seconds) {
    double t0 = now();
    while (now() - t0 < seconds) {
    }
}

/* the GIL */
static pthread_mutex_t gil_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gil_cond;
static int gil_locked = 0;
static int last_holder = -1;

/* the run */
static double held_s, free_s, jitter, switch_s, stop_at;
static long loops[2], sleeps[2];

static int take_gil(int me) {       /* returns 1 if the GIL came from the other thread */
    pthread_mutex_lock(&gil_mutex);
    if (gil_locked) {
        sleeps[me]++;
        while (gil_locked) {
            struct timespec deadline;
            clock_gettime(CLOCK_MONOTONIC, &deadline);
            deadline.tv_nsec += 5000000;                    /* sys.getswitchinterval() */
            if (deadline.tv_nsec >= 1000000000) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&gil_cond, &gil_mutex, &deadline);
        }
    }
    gil_locked = 1;
    int switched = last_holder != me;
    last_holder = me;
    pthread_mutex_unlock(&gil_mutex);
    return switched;
}

static void drop_gil(void) {
    pthread_mutex_lock(&gil_mutex);
    gil_locked = 0;
    pthread_cond_signal(&gil_cond);
    pthread_mutex_unlock(&gil_mutex);
}

static double jittered(double nominal, unsigned int *seed) {
    return nominal * (1.0 - jitter + 2.0 * jitter * (rand_r(seed) / (double)RAND_MAX));
}

static void *worker(void *arg) {
    int me = (int)(long)arg;
    unsigned int seed = me + 1;
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(me, &cpus);
    pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus);
    int switched = take_gil(me);
    long n = 0;
    while (now() < stop_at) {
        spin(jittered(held_s, &seed) + (switched ? switch_s : 0.0));
        drop_gil();
        spin(jittered(free_s, &seed));
        switched = take_gil(me);
        n++;
    }
    drop_gil();
    loops[me] = n;
    return NULL;
}

static double rate(int threads, double seconds) {
    pthread_t t[2];
    last_holder = -1;
    stop_at = now() + seconds;
    for (int i = 0; i < threads; i++) {
        loops[i] = sleeps[i] = 0;
        pthread_create(&t[i], NULL, worker, (void *)(long)i);
    }
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += loops[i];
    }
    return total / seconds;
}

static double env(const char *name) {
    const char *v = getenv(name);
    return v ? atof(v) : 0.0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc % 2 == 0) {
        fprintf(stderr, "usage: [J=jitter] [M=switch_us] %s HELD_US FREE_US [HELD_US FREE_US ...]\n", argv[0]);
        return 2;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&gil_cond, &attr);
    jitter = env("J");
    switch_s = env("M") * 1e-6;
    for (int k = 1; k + 1 < argc; k += 2) {
        held_s = atof(argv[k]) * 1e-6;
        free_s = atof(argv[k + 1]) * 1e-6;
        double one = rate(1, 0.3), two = rate(2, 0.3);
        printf("held %5.1f us, free %5.1f us: 1 thread %8.0f/s, 2 threads %8.0f/s, ratio %.2f, "
               "GIL sleeps per loop %.2f\n", held_s * 1e6, free_s * 1e6, one, two, two / one,
               (double)(sleeps[0] + sleeps[1]) / (loops[0] + loops[1]));
    }
    return 0;
}
