/* weft-test-helper: a scripted test program for weft's cross-process tests.
 *
 * Usage: weft-test-helper ACTION [ARG] [ACTION [ARG]]...
 *
 * The actions run in order; each takes the fixed number of arguments shown.
 * The whole script is checked before anything runs, so a typo prints only
 * a message on stderr and exits 2.
 *
 *   plan N          print "1..N"
 *   skipall REASON  print "1..0 # SKIP REASON"
 *   ok DESC         print "ok K - DESC" for the next test number K
 *   notok DESC      print "not ok K - DESC"
 *   todo DESC       print "not ok K - DESC # TODO not yet"
 *   skip DESC       print "ok K - DESC # SKIP not here"
 *                   (DESC "-" means no description: "ok K")
 *   bail REASON     print "Bail out! REASON"
 *   line TEXT       print TEXT and a newline on stdout
 *   raw TEXT        print TEXT on stdout, no newline
 *   stderr TEXT     print TEXT and a newline on stderr
 *   garbage N       write N bytes of fixed binary garbage on stdout (NUL,
 *                   0xff, invalid UTF-8, some newlines; the same every time)
 *   longline N      write one line of N 'x' bytes, in chunks, then a newline
 *   flood N         write N lines "# flood line K" as fast as possible
 *   sleep MS        sleep MS milliseconds
 *   hang            sleep until killed
 *   segv            crash with a real SIGSEGV (null pointer write)
 *   abort           call abort()
 *   exit N          exit with status N now
 *   fork-leak       fork a child that sleeps forever in our process group,
 *                   holding stdout and stderr open
 *   setsid-leak     the same, but the child first calls setsid()
 *                   (both print "leaked pid P" on stderr once the child is
 *                   in place)
 *   close-stdout    close fd 1; later stdout output is dropped
 *   ignore-term     ignore SIGTERM (inherited by later leaked children)
 *   pidfile PATH    write our pid and a newline to PATH (atomically, by
 *                   rename, so a reader never sees a partial file)
 *   event TEXT      write TEXT and a newline to the fd named by
 *                   WEFT_EVENT_FD (weft's native events); exit 2 if unset
 *
 * Every action's output is flushed before the next action starts, so the
 * order of stdout and stderr is fixed at the action level. At the end of the
 * script the helper exits 0.
 *
 * Examples:
 *   weft-test-helper plan 2 ok first ok -
 *   weft-test-helper plan 3 ok a stderr oops segv
 *   weft-test-helper plan 1 setsid-leak ok - hang
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum arg_kind { ARG_NONE, ARG_TEXT, ARG_NUMBER };

struct action {
    const char *name;
    enum arg_kind arg;
};

static const struct action actions[] = {
    {"plan", ARG_NUMBER},     {"skipall", ARG_TEXT},
    {"ok", ARG_TEXT},         {"notok", ARG_TEXT},
    {"todo", ARG_TEXT},       {"skip", ARG_TEXT},
    {"bail", ARG_TEXT},       {"line", ARG_TEXT},
    {"raw", ARG_TEXT},        {"stderr", ARG_TEXT},
    {"garbage", ARG_NUMBER},  {"longline", ARG_NUMBER},
    {"flood", ARG_NUMBER},    {"sleep", ARG_NUMBER},
    {"hang", ARG_NONE},       {"segv", ARG_NONE},
    {"abort", ARG_NONE},      {"exit", ARG_NUMBER},
    {"fork-leak", ARG_NONE},  {"setsid-leak", ARG_NONE},
    {"close-stdout", ARG_NONE}, {"ignore-term", ARG_NONE},
    {"pidfile", ARG_TEXT},    {"event", ARG_TEXT},
};

static int test_number;
static int stdout_closed;

static void die(const char *what)
{
    fprintf(stderr, "weft-test-helper: %s: %s\n", what, strerror(errno));
    exit(2);
}

static const struct action *find_action(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof actions / sizeof actions[0]; ++i)
        if (strcmp(actions[i].name, name) == 0)
            return &actions[i];
    return NULL;
}

/* Parses a non-negative decimal number; returns -1 if "s" is not one. */
static long parse_number(const char *s)
{
    char *end;
    long n;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    n = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    return n;
}

/* Checks the whole script; returns 0 if it is runnable. */
static int check_script(int argc, char **argv)
{
    int i = 1;

    while (i < argc) {
        const struct action *a = find_action(argv[i]);

        if (a == NULL) {
            fprintf(stderr, "weft-test-helper: unknown action '%s'\n", argv[i]);
            return -1;
        }
        if (a->arg != ARG_NONE) {
            if (i + 1 >= argc) {
                fprintf(stderr, "weft-test-helper: '%s' needs an argument\n",
                        a->name);
                return -1;
            }
            if (a->arg == ARG_NUMBER && parse_number(argv[i + 1]) < 0) {
                fprintf(stderr,
                        "weft-test-helper: '%s' needs a number, not '%s'\n",
                        a->name, argv[i + 1]);
                return -1;
            }
            ++i;
        }
        ++i;
    }
    return 0;
}

static void out(const char *s, size_t n)
{
    if (!stdout_closed)
        fwrite(s, 1, n, stdout);
}

static void test_point(const char *status, const char *desc,
                       const char *directive)
{
    if (stdout_closed)
        return;
    printf("%s %d", status, ++test_number);
    if (strcmp(desc, "-") != 0)
        printf(" - %s", desc);
    if (directive != NULL)
        printf(" # %s", directive);
    putchar('\n');
}

static void garbage(long n)
{
    static const unsigned char prefix[] = {
        0x00, 0xff, 0xc3, 0x28, 0x80, '\n', 0xfe, 0xed, 0xe2, 0x82, '\n',
        0xf0, 0x9f, 0x98, 0x00, 0xc0, 0xaf, '\r', 0x1b, '[', '\n',
    };
    unsigned long state = 12345;
    unsigned char buf[4096];
    long i = 0;

    while (i < n) {
        size_t len = 0;

        while (len < sizeof buf && i < n) {
            unsigned char c;

            if ((size_t)i < sizeof prefix) {
                c = prefix[i];
            } else if (i % 61 == 0) {
                c = '\n';
            } else {
                state = (state * 1103515245UL + 12345UL) & 0x7fffffffUL;
                c = (unsigned char)(state >> 16);
            }
            buf[len++] = c;
            ++i;
        }
        out((const char *)buf, len);
    }
}

static void longline(long n)
{
    char buf[8192];

    memset(buf, 'x', sizeof buf);
    while (n > 0) {
        size_t len = n < (long)sizeof buf ? (size_t)n : sizeof buf;

        out(buf, len);
        n -= (long)len;
    }
    out("\n", 1);
}

static void flood(long n)
{
    long k;

    if (stdout_closed)
        return;
    for (k = 1; k <= n; ++k)
        printf("# flood line %ld\n", k);
}

static void sleep_ms(long ms)
{
    struct timespec t;

    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

static void hang(void)
{
    for (;;)
        pause();
}

static void segv(void)
{
    /* Both volatile: with only the pointer volatile, gcc -O2 drops the store. */
    volatile int *volatile p = NULL;

    *p = 1;
    raise(SIGSEGV); /* not reached */
}

/* Forks a child that outlives us; it keeps every fd we have open. */
static void leak(int new_session)
{
    int ready[2];
    pid_t pid;
    char c = 0;

    if (pipe(ready) != 0)
        die("pipe");
    pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(ready[0]);
        if (new_session && setsid() < 0)
            _exit(2);
        /* Tell the parent we are in place, so a test that kills the
         * process group right after "leaked pid" cannot race setsid(). */
        if (write(ready[1], &c, 1) != 1)
            _exit(2);
        close(ready[1]);
        hang();
    }
    close(ready[1]);
    while (read(ready[0], &c, 1) < 0 && errno == EINTR)
        ;
    close(ready[0]);
    fprintf(stderr, "leaked pid %ld\n", (long)pid);
}

static void pidfile(const char *path)
{
    size_t len = strlen(path) + sizeof ".tmp";
    char *tmp = malloc(len);
    FILE *f;

    if (tmp == NULL)
        die("malloc");
    snprintf(tmp, len, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        die(tmp);
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0)
        die(tmp);
    if (rename(tmp, path) != 0)
        die(path);
    free(tmp);
}

static void run(const char *name, const char *arg)
{
    long n = arg != NULL ? parse_number(arg) : 0;

    if (strcmp(name, "plan") == 0) {
        if (!stdout_closed)
            printf("1..%ld\n", n);
    } else if (strcmp(name, "skipall") == 0) {
        if (!stdout_closed)
            printf("1..0 # SKIP %s\n", arg);
    } else if (strcmp(name, "ok") == 0) {
        test_point("ok", arg, NULL);
    } else if (strcmp(name, "notok") == 0) {
        test_point("not ok", arg, NULL);
    } else if (strcmp(name, "todo") == 0) {
        test_point("not ok", arg, "TODO not yet");
    } else if (strcmp(name, "skip") == 0) {
        test_point("ok", arg, "SKIP not here");
    } else if (strcmp(name, "bail") == 0) {
        if (!stdout_closed)
            printf("Bail out! %s\n", arg);
    } else if (strcmp(name, "line") == 0) {
        out(arg, strlen(arg));
        out("\n", 1);
    } else if (strcmp(name, "raw") == 0) {
        out(arg, strlen(arg));
    } else if (strcmp(name, "stderr") == 0) {
        fprintf(stderr, "%s\n", arg);
    } else if (strcmp(name, "event") == 0) {
        const char *fd_text = getenv("WEFT_EVENT_FD");
        if (!fd_text) {
            fprintf(stderr, "weft-test-helper: WEFT_EVENT_FD is not set\n");
            exit(2);
        }
        int fd = atoi(fd_text);
        size_t len = strlen(arg);
        if (write(fd, arg, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
            die("write to WEFT_EVENT_FD");
    } else if (strcmp(name, "garbage") == 0) {
        garbage(n);
    } else if (strcmp(name, "longline") == 0) {
        longline(n);
    } else if (strcmp(name, "flood") == 0) {
        flood(n);
    } else if (strcmp(name, "sleep") == 0) {
        sleep_ms(n);
    } else if (strcmp(name, "hang") == 0) {
        hang();
    } else if (strcmp(name, "segv") == 0) {
        segv();
    } else if (strcmp(name, "abort") == 0) {
        abort();
    } else if (strcmp(name, "exit") == 0) {
        fflush(NULL);
        exit((int)(n & 0xff));
    } else if (strcmp(name, "fork-leak") == 0) {
        leak(0);
    } else if (strcmp(name, "setsid-leak") == 0) {
        leak(1);
    } else if (strcmp(name, "close-stdout") == 0) {
        stdout_closed = 1;
        close(STDOUT_FILENO);
    } else if (strcmp(name, "ignore-term") == 0) {
        signal(SIGTERM, SIG_IGN);
    } else if (strcmp(name, "pidfile") == 0) {
        pidfile(arg);
    }
}

int main(int argc, char **argv)
{
    int i = 1;

    if (check_script(argc, argv) != 0)
        return 2;
    /* Fully buffered and flushed after every action: "flood" stays fast,
     * and the order against (unbuffered) stderr is still per action. */
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    while (i < argc) {
        const struct action *a = find_action(argv[i]);
        const char *arg = a->arg != ARG_NONE ? argv[i + 1] : NULL;

        /* The buffer is empty whenever an action starts, so a crash never
         * loses earlier output and a fork never duplicates it. */
        run(a->name, arg);
        if (!stdout_closed)
            fflush(stdout);
        i += arg != NULL ? 2 : 1;
    }
    return 0;
}
