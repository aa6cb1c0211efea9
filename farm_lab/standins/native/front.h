/*
 * Shared by the lab's native fronts for its Python stand-in tools (vcgencmd.c, nvpmodel.c; built by
 * farm_lab/standin_native.py). A real board's vcgencmd and nvpmodel are native binaries of a few ms;
 * a Python start costs 10-20 ms of CPU, on every contact the agent makes. A front answers the queries
 * the agent makes on every contact itself, byte for byte as the Python stand-in does, and execs the
 * Python stand-in (installed beside it as TOOL.py) for everything else.
 *
 * The rule that keeps the two identical: a front prints nothing until it knows the whole answer, and
 * whenever an input is anything but the plain case it was written for (a byte outside printable
 * ASCII, a number Python's int() reads differently, a file too large) it hands over to the Python
 * stand-in, which then answers as it always did.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FRONT_MAX_FILE 65536

static char **front_argv;
static const char *front_tool;  /* the Python stand-in beside this binary is front_tool + ".py" */
static const char *front_name;  /* how the root check's message names the tool */

/* Exec `python3 DIR/TOOL.py ARGS...`, DIR being this binary's folder: what `#!/usr/bin/env python3` does. */
static void front_delegate(void) {
  const char *tool = front_tool;
  char self[PATH_MAX], script[PATH_MAX + 64];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fprintf(stderr, "%s: cannot find this stand-in's own folder: %s\n", tool, strerror(errno));
    exit(127);
  }
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash != NULL) *slash = '\0';
  snprintf(script, sizeof script, "%s/%s.py", self, tool);
  int argc = 0;
  while (front_argv[argc] != NULL) argc++;
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (args == NULL) exit(127);
  args[0] = "python3";
  args[1] = script;
  for (int i = 1; i < argc; i++) args[i + 1] = front_argv[i];
  fflush(stdout);
  execvp("python3", args);
  fprintf(stderr, "%s: cannot run the Python stand-in %s with python3: %s\n", tool, script, strerror(errno));
  exit(127);
}

/* Python's str.isspace() on ASCII, which str.strip() and int() skip (C's isspace() lacks \x1c-\x1f). */
static int py_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* The device root, or exit 2 with the stand-ins' message when os.path.abspath(root) is "/". */
static const char *front_root(void) {
  const char *root = getenv("FARM_DEVICE_ROOT");
  if (root == NULL || root[0] == '\0') root = "/";
  char joined[PATH_MAX * 2];
  if (root[0] == '/') {
    snprintf(joined, sizeof joined, "%s", root);
  } else {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL) front_delegate();
    size_t len = strlen(cwd);
    snprintf(joined, sizeof joined, "%s%s%s", cwd, len && cwd[len - 1] == '/' ? "" : "/", root); /* os.path.join */
  }
  /* posixpath.normpath keeps exactly two leading slashes ("//x"), so only one or three and more can be "/". */
  int is_root = !(joined[0] == '/' && joined[1] == '/' && joined[2] != '/');
  int depth = 0;
  for (char *part = joined; is_root && *part;) {
    while (*part == '/') part++;
    size_t len = strcspn(part, "/");
    if (len == 2 && part[0] == '.' && part[1] == '.') {
      if (depth > 0) depth--;
    } else if (len > 0 && !(len == 1 && part[0] == '.')) {
      depth++;
    }
    part += len;
  }
  if (is_root && depth == 0) {
    fprintf(stderr, "%s: FARM_DEVICE_ROOT names no simulated board; this stand-in only acts on one\n", front_name);
    exit(2);
  }
  return root;
}

/*
 * A file under the device root, stripped as Python's read().strip() leaves it (NULs dropped first when
 * drop_nul); NULL where Python's open() or read() raises OSError. Hands over to Python for any byte
 * that is not printable ASCII or plain whitespace (decoding, universal newlines, unicode whitespace).
 */
static char *front_read(const char *relative, int drop_nul) {
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s/%s", front_root(), relative);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  static char buffers[4][FRONT_MAX_FILE + 1];
  static int next;
  char *text = buffers[next++ % 4];
  size_t size = 0;
  for (;;) {
    ssize_t got = read(fd, text + size, FRONT_MAX_FILE - size);
    if (got < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return NULL;
    }
    if (got == 0) break;
    size += (size_t)got;
    if (size == FRONT_MAX_FILE) {
      close(fd);
      front_delegate();
    }
  }
  close(fd);
  size_t kept = 0;
  for (size_t i = 0; i < size; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == 0 && drop_nul) continue;
    if (c == '\r' || (c < 0x20 && c != '\t' && c != '\n') || c >= 0x7f) front_delegate();
    text[kept++] = (char)c;
  }
  while (kept > 0 && py_space(text[kept - 1])) kept--;
  text[kept] = '\0';
  char *start = text;
  while (py_space(*start)) start++;
  return start;
}

/* A decimal Python's int() reads as C does: -?[0-9]{1,15}; anything else goes to Python. */
static long long front_int(const char *text) {
  const char *digits = text[0] == '-' ? text + 1 : text;
  size_t len = strlen(digits);
  if (len == 0 || len > 15 || strspn(digits, "0123456789") != len) front_delegate();
  return strtoll(text, NULL, 10);
}
