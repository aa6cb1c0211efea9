/*
 * Native front of the stand-in nvpmodel (farm_lab/standins/nvpmodel, installed beside this as
 * nvpmodel.py): answers `nvpmodel -q`, which the agent asks a simulated Jetson on every contact, and
 * execs the Python stand-in for every other use (-m, -p --verbose, -f, -h, errors). It parses
 * /etc/nvpmodel.conf as the Python stand-in does, but only to tell a config Python reads without
 * complaint from one it fails on: any failure, or a line it is unsure of, goes to Python, whose
 * "NVPM ERROR" text stays the only one. See front.h.
 */

#include "front.h"

#define CONF "etc/nvpmodel.conf"
#define STATUS "var/lib/nvpmodel/status"
#define MAX_MODELS 256

struct model {
  long long id;
  char name[256];
};

static int is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_blank(char c) { return c == ' ' || c == '\t'; } /* \s, once front_read let no other through */

/* The value of KEY in a header's attributes, as dict(re.findall(r"(\w+)=(\S+)", attrs)) keeps it
 * (the last one wins); copied into value, or 0 when absent. */
static int attribute(const char *attrs, const char *key, char *value, size_t size) {
  int found = 0;
  size_t key_len = strlen(key);
  for (const char *at = attrs; *at;) {
    const char *word = at;
    while (is_word(*at)) at++;
    if (at == word || *at != '=' || at[1] == '\0' || is_blank(at[1])) {
      at = word + 1; /* findall moves on one character where no match starts */
      continue;
    }
    const char *val = at + 1, *end = val;
    while (*end && !is_blank(*end)) end++;
    if ((size_t)(at - word) == key_len && strncmp(word, key, key_len) == 0) {
      if ((size_t)(end - val) >= size) front_delegate();
      memcpy(value, val, (size_t)(end - val));
      value[end - val] = '\0';
      found = 1;
    }
    at = end;
  }
  return found;
}

/* re.match(r"^<\s*(\w+)\s+(.*?)\s*>$", line): the kind and attributes of a header line, or 0. */
static int header(char *line, char **kind, char **attrs) {
  size_t len = strlen(line);
  if (len < 2 || line[0] != '<' || line[len - 1] != '>') return 0;
  char *at = line + 1;
  while (is_blank(*at)) at++;
  char *word = at;
  while (is_word(*at)) at++;
  if (at == word || !is_blank(*at)) return 0;
  *at++ = '\0';
  while (is_blank(*at)) at++;
  char *end = line + len - 1; /* the closing '>' */
  while (end > at && is_blank(end[-1])) end--;
  if (end < at) end = at;
  *end = '\0';
  *kind = word;
  *attrs = at;
  return 1;
}

int main(int argc, char **argv) {
  front_argv = argv;
  front_tool = "nvpmodel";
  if (argc != 2 || (strcmp(argv[1], "-q") != 0 && strcmp(argv[1], "--query") != 0)) front_delegate();
  const char *slash = strrchr(argv[0], '/');
  front_name = slash ? slash + 1 : argv[0]; /* _sysfs names the tool by sys.argv[0] in its messages */
  char *text = front_read(CONF, 0);
  if (text == NULL) front_delegate();

  static struct model models[MAX_MODELS];
  int count = 0, section = 0; /* 0: none, 1: a PARAM, 2: a POWER_MODEL */
  long long fallback = -1;
  int has_default = 0;
  char value[256];
  for (char *raw = text; raw != NULL;) {
    char *newline = strchr(raw, '\n');
    if (newline) *newline = '\0';
    char *line = raw;
    raw = newline ? newline + 1 : NULL;
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    while (is_blank(*line)) line++;
    size_t len = strlen(line);
    while (len > 0 && is_blank(line[len - 1])) line[--len] = '\0';
    if (len == 0) continue;
    char *kind, *attrs;
    if (header(line, &kind, &attrs)) {
      if (strcmp(kind, "PARAM") == 0) {
        if (!attribute(attrs, "NAME", value, sizeof value)) front_delegate();
        section = 1;
      } else if (strcmp(kind, "POWER_MODEL") == 0) {
        if (count == MAX_MODELS || !attribute(attrs, "ID", value, sizeof value)) front_delegate();
        models[count].id = front_int(value);
        if (!attribute(attrs, "NAME", models[count].name, sizeof models[count].name)) front_delegate();
        count++;
        section = 2;
      } else if (strcmp(kind, "PM_CONFIG") == 0) {
        if (!attribute(attrs, "DEFAULT", value, sizeof value)) front_delegate();
        fallback = front_int(value);
        has_default = 1;
        section = 0;
      }
      continue;
    }
    /* A setting or an argument needs a section and two fields, or Python fails the line. */
    char *second = line + strcspn(line, " \t");
    if (section == 0 || *second == '\0') front_delegate();
  }

  if (!has_default) fallback = count ? models[0].id : 0;
  long long mode = fallback;
  const char *status = front_read(STATUS, 0);
  const char *pmode = status ? strstr(status, "pmode:") : NULL;
  while (pmode != NULL && !(pmode[6] >= '0' && pmode[6] <= '9')) pmode = strstr(pmode + 1, "pmode:");
  if (pmode != NULL) {
    size_t digits = strspn(pmode + 6, "0123456789");
    if (digits > 15) front_delegate();
    mode = strtoll(pmode + 6, NULL, 10);
  }
  const char *name = "UNKNOWN";
  for (int i = 0; i < count; i++) {
    if (models[i].id == mode) {
      name = models[i].name;
      break;
    }
  }
  printf("NV Power Mode: %s\n%lld\n", name, mode);
  return 0;
}
