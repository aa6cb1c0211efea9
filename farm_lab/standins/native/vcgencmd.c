/*
 * Native front of the stand-in vcgencmd (farm_lab/standins/vcgencmd, installed beside this as
 * vcgencmd.py): answers get_throttled, measure_temp and measure_clock NAME, which the agent asks a
 * simulated Raspberry Pi on every contact, and execs the Python stand-in for every other command.
 * See front.h for the rule that keeps both answers byte for byte the same.
 */

#include "front.h"

#define TOOL "vcgencmd"
#define THROTTLED "sys/devices/platform/soc/soc:firmware/get_throttled"
#define ARM_FREQ "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"

static const char *const THERMAL[] = {"sys/class/thermal/thermal_zone0/temp",
                                      "sys/devices/virtual/thermal/thermal_zone0/temp"};

static const char *model(void) {
  const char *text = front_read("proc/device-tree/model", 1);
  return text == NULL ? "" : text;
}

static int get_throttled(void) {
  const char *text = front_read(THROTTLED, 1);
  if (text == NULL || text[0] == '\0') text = "0";
  const char *digits = (text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) ? text + 2 : text;
  size_t len = strlen(digits);
  if (len == 0 || strspn(digits, "0123456789abcdefABCDEF") != len) front_delegate();
  while (len > 1 && digits[0] == '0') digits++, len--;
  if (len > 16) front_delegate();
  printf("throttled=0x%llx\n", strtoull(digits, NULL, 16));
  return 0;
}

static int measure_temp(void) {
  for (size_t i = 0; i < sizeof THERMAL / sizeof THERMAL[0]; i++) {
    const char *text = front_read(THERMAL[i], 1);
    if (text != NULL && text[0] != '\0') {
      printf("temp=%.1f'C\n", (double)front_int(text) / 1000.0);
      return 0;
    }
  }
  printf("error=1 error_msg=\"Command not registered\"\n");
  return 1;
}

static int measure_clock(const char *name) {
  /* The firmware's clock numbers differ between the Pi 4 (BCM2711) and earlier Pis. */
  const char *board = model();
  int newer = strstr(board, "Pi 4") || strstr(board, "Pi 5") || strstr(board, "Compute Module 4");
  if (strcmp(name, "arm") == 0) {
    const char *khz = front_read(ARM_FREQ, 1);
    printf("frequency(%d)=%lld\n", newer ? 48 : 45, khz && khz[0] ? front_int(khz) * 1000 : 0);
  } else if (strcmp(name, "core") == 0) {
    printf("frequency(1)=500000000\n");
  } else {
    printf("frequency(0)=0\n");
  }
  return 0;
}

int main(int argc, char **argv) {
  front_argv = argv;
  front_tool = front_name = TOOL;
  const char *command = argc > 1 ? argv[1] : "";
  int known = strcmp(command, "get_throttled") == 0 || strcmp(command, "measure_temp") == 0 ||
              (strcmp(command, "measure_clock") == 0 && argc > 2);
  if (!known) front_delegate();
  if (strstr(model(), "Raspberry Pi") == NULL) {
    /* One stand-in folder serves every simulated board; only a Pi has this tool. */
    fprintf(stderr, "vcgencmd: command not found (the simulated board is not a Raspberry Pi)\n");
    return 127;
  }
  if (strcmp(command, "get_throttled") == 0) return get_throttled();
  if (strcmp(command, "measure_temp") == 0) return measure_temp();
  return measure_clock(argv[2]);
}
