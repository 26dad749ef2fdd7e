/* exec-stage: a weft stage in C (docs/stages.md), the protocol and
 * nothing more. It preloads nothing (there is nothing to preload in C): it
 * forks and execs each test, so it shows, in a third language, everything
 * a stage must do: say "ready", take one spawn request per connection,
 * open the auditor's pipe ends through /proc, fork a child into its own
 * process group with fds 0-3 in place, answer "spawned", reap it and answer
 * "exited" with its wait status, kill its group if the connection drops,
 * and end (killing its children) when stdin ends.
 *
 *   exec-stage --socket PATH [--name NAME] [--preload=X]...
 *
 * weft.toml: [[stage]] name = "c" command = ["build/examples/exec-stage"]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CONNS 256
#define MAX_ITEMS 4096

struct conn {
  int fd;
  pid_t pid;    /* its child, once spawned */
  char buf[1 << 16];
  size_t len;
};

static struct conn conns[MAX_CONNS];
static int wake[2];
static volatile sig_atomic_t draining;  /* SIGUSR2: a reload replaces us */
static int stdin_open = 1;

static void on_usr2(int sig) {
  (void)sig;
  draining = 1;
  int saved = errno;
  if (write(wake[1], "d", 1) < 0) { /* a wake is pending anyway */ }
  errno = saved;
}

static void on_chld(int sig) {
  (void)sig;
  int saved = errno;
  if (write(wake[1], "c", 1) < 0) { /* full: a wake is pending anyway */ }
  errno = saved;
}

/* A JSON string at *p (after its opening quote): its text, unescaped, in
 * a malloc'ed buffer; *p is left after the closing quote. */
static char *json_string(const char **p) {
  size_t cap = 64, n = 0;
  char *out = malloc(cap);
  const char *s = *p;
  while (*s && *s != '"') {
    unsigned cp = (unsigned char)*s++;
    if (cp == '\\') {
      char e = *s++;
      switch (e) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'u': {
          cp = (unsigned)strtoul((char[5]){s[0], s[1], s[2], s[3], 0}, NULL, 16);
          s += 4;
          break;
        }
        default: cp = (unsigned char)e;
      }
    }
    if (n + 4 >= cap) out = realloc(out, cap *= 2);
    if (cp < 0x80) out[n++] = (char)cp;
    else if (cp < 0x800) { out[n++] = (char)(0xC0 | (cp >> 6)); out[n++] = (char)(0x80 | (cp & 63)); }
    else { out[n++] = (char)(0xE0 | (cp >> 12)); out[n++] = (char)(0x80 | ((cp >> 6) & 63)); out[n++] = (char)(0x80 | (cp & 63)); }
  }
  out[n] = 0;
  *p = *s ? s + 1 : s;
  return out;
}

/* The strings of the array named "key" in the one-line object "line", as
 * a NULL-ended array (NULL when absent). Non-ASCII bytes are passed as
 * they are (only escapes are decoded). */
static char **json_array(const char *line, const char *key) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\"", key);
  const char *p = strstr(line, quoted);
  if (!p) return NULL;
  p = strchr(p + strlen(quoted), '[');
  if (!p) return NULL;
  ++p;
  char **items = calloc(MAX_ITEMS + 1, sizeof *items);
  int n = 0;
  while (*p && *p != ']' && n < MAX_ITEMS) {
    if (*p == '"') {
      ++p;
      items[n++] = json_string(&p);
    } else {
      ++p;
    }
  }
  return items;
}

static char *json_field(const char *line, const char *key) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\"", key);
  const char *p = strstr(line, quoted);
  if (!p) return NULL;
  p = strchr(p + strlen(quoted), '"');
  if (!p) return NULL;
  ++p;
  return json_string(&p);
}

static void say(int fd, const char *text) {
  size_t len = strlen(text);
  while (len > 0) {
    ssize_t n = write(fd, text, len);
    if (n <= 0 && errno != EINTR) return;
    if (n > 0) text += n, len -= (size_t)n;
  }
}

/* One request: fork and exec its test. Returns the pid, or -1 with *why. */
static pid_t spawn(const char *line, const char **why) {
  char **argv = json_array(line, "argv");
  char **env = json_array(line, "env");
  char **fds = json_array(line, "fds");
  char *cwd = json_field(line, "cwd");
  if (!argv || !argv[0]) { *why = "no argv"; return -1; }
  int opened[4] = {-1, -1, -1, -1};
  for (int i = 0; fds && fds[i] && i < 4; ++i) {
    opened[i] = open(fds[i], (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
    if (opened[i] < 0) { *why = "cannot open one of the fds"; goto fail; }
  }
  pid_t pid = fork();
  if (pid < 0) { *why = "fork failed"; goto fail; }
  if (pid == 0) {
    setpgid(0, 0);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int i = 0; i < 4; ++i)
      if (opened[i] >= 0) dup2(opened[i], i);  /* dup2 clears close-on-exec */
    if (cwd && *cwd && chdir(cwd) != 0) _exit(127);
    execvpe(argv[0], argv, env ? env : (char *[]){NULL});
    fprintf(stderr, "exec-stage: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  for (int i = 0; i < 4; ++i) if (opened[i] >= 0) close(opened[i]);
  return pid;  /* (the parsed strings: freed when the stage ends) */
fail:
  for (int i = 0; i < 4; ++i) if (opened[i] >= 0) close(opened[i]);
  return -1;
}

int main(int argc, char **argv) {
  const char *path = NULL, *name = "stage";
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--socket") && i + 1 < argc) path = argv[++i];
    else if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
  }
  if (!path) { fprintf(stderr, "exec-stage: --socket PATH is needed\n"); return 2; }
  int lst = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  unlink(path);
  char line[8192];
  if (lst < 0 || bind(lst, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lst, 64) != 0) {
    snprintf(line, sizeof line, "{\"t\":\"error\",\"name\":\"%s\",\"message\":\"cannot listen on %s: %s\"}\n",
             name, path, strerror(errno));
    say(1, line);
    return 1;
  }
  snprintf(line, sizeof line,
           "{\"t\":\"ready\",\"name\":\"%s\",\"pid\":%d,\"lang\":\"c\",\"socket\":\"%s\",\"preloaded\":[],\"load_ms\":0}\n",
           name, (int)getpid(), path);
  say(1, line);
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) return 1;
  signal(SIGCHLD, on_chld);
  signal(SIGUSR2, on_usr2);
  signal(SIGPIPE, SIG_IGN);
  for (int i = 0; i < MAX_CONNS; ++i) conns[i].fd = -1;
  for (;;) {
    if (draining) {
      /* No new tests; the running ones finish here, then we end. */
      if (lst >= 0) { close(lst); lst = -1; unlink(path); }
      int busy = 0;
      for (int i = 0; i < MAX_CONNS; ++i) busy |= conns[i].fd >= 0 && conns[i].pid > 0;
      if (!busy) return 0;
    }
    struct pollfd p[MAX_CONNS + 3];
    int n = 0;
    p[n++] = (struct pollfd){lst, POLLIN, 0};
    p[n++] = (struct pollfd){wake[0], POLLIN, 0};
    p[n++] = (struct pollfd){stdin_open ? 0 : -1, POLLIN, 0};
    for (int i = 0; i < MAX_CONNS; ++i) p[n++] = (struct pollfd){conns[i].fd, POLLIN, 0};
    if (poll(p, (nfds_t)n, -1) < 0) continue;
    if (p[2].revents) {
      char b[4096];
      if (read(0, b, sizeof b) <= 0) {
        if (!draining) break;  /* the runner is gone */
        stdin_open = 0;        /* (draining: our tests end with their auditors) */
      }
    }
    if (p[0].revents) {
      int c = accept4(lst, NULL, NULL, SOCK_CLOEXEC);
      for (int i = 0; c >= 0 && i < MAX_CONNS; ++i)
        if (conns[i].fd < 0) { conns[i] = (struct conn){.fd = c, .pid = 0, .len = 0}; c = -1; }
      if (c >= 0) close(c);
    }
    if (p[1].revents) {
      char b[256];
      while (read(wake[0], b, sizeof b) > 0) {}
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < MAX_CONNS; ++i)
          if (conns[i].fd >= 0 && conns[i].pid == pid) {
            snprintf(line, sizeof line, "{\"t\":\"exited\",\"pid\":%d,\"status\":%d}\n", (int)pid, status);
            say(conns[i].fd, line);
            conns[i].pid = 0;
          }
    }
    for (int i = 0; i < MAX_CONNS; ++i) {
      struct conn *c = &conns[i];
      if (c->fd < 0 || !p[3 + i].revents) continue;
      ssize_t got = read(c->fd, c->buf + c->len, sizeof c->buf - c->len - 1);
      if (got <= 0) {
        if (c->pid > 0) kill(-c->pid, SIGKILL);  /* its auditor is gone */
        close(c->fd);
        c->fd = -1;
        continue;
      }
      c->len += (size_t)got;
      c->buf[c->len] = 0;
      char *nl = strchr(c->buf, '\n');
      if (!nl || c->pid) continue;
      *nl = 0;
      const char *why = "";
      pid_t pid = spawn(c->buf, &why);
      if (pid > 0) {
        c->pid = pid;
        snprintf(line, sizeof line, "{\"t\":\"spawned\",\"pid\":%d}\n", (int)pid);
      } else {
        snprintf(line, sizeof line, "{\"t\":\"error\",\"message\":\"%s\"}\n", why);
      }
      say(c->fd, line);
    }
  }
  for (int i = 0; i < MAX_CONNS; ++i)
    if (conns[i].fd >= 0 && conns[i].pid > 0) kill(-conns[i].pid, SIGKILL);
  unlink(path);
  return 0;
}
