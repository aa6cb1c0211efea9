/*
 * A stand-in for libedgetpu.so.1 in the simulated lab: farm's own code, not Coral's.
 *
 * TFLite loads it exactly as it loads the real library, as an external delegate:
 *   tflite_runtime.interpreter.load_delegate('libedgetpu.so.1', {'device': 'usb:0'})
 * calls tflite_plugin_create_delegate(keys, values, n, report_error) and later
 * tflite_plugin_destroy_delegate(delegate). The delegate claims every
 * `edgetpu-custom-op` node, writes deterministic outputs and takes the time the
 * timing model below gives, measured against CLOCK_MONOTONIC.
 *
 * The documented knobs, the timing model and every constant's source are in
 * farm_lab/standin_libedgetpu.py (the build helper); the constants here must stay
 * equal to the ones listed there (tests/test_libedgetpu_standin.py checks the pair).
 *
 * ABI: the structs below follow TensorFlow's tensorflow/lite/core/c/common.h as
 * documented there (written from the documentation, field by field; nothing copied).
 * Its rule is that fields are only ever appended, never reordered. Between the
 * tflite-runtime versions the lab runs (2.11 and 2.14) that shows in two places:
 *  - TfLiteRegistration: 2.11 ends at `registration_external` (its TfLiteRegistration_V2
 *    layout), 2.14 adds `async_kernel` and `inplace_operator`. It is passed BY VALUE to
 *    ReplaceNodeSubsetsWithDelegateKernels, so we pass the longest layout, zero-filled:
 *    a runtime reads the prefix it knows (on x86-64 and aarch64 a struct this size
 *    travels in memory, so a longer one only leaves bytes the callee never reads).
 *  - TfLiteDelegate: `opaque_delegate_builder` was appended after `flags`; we allocate
 *    it and set it NULL, which every version reads as "not an opaque delegate".
 * TfLiteTensor, TfLiteNode and the TfLiteContext fields used here (up to
 * ReplaceNodeSubsetsWithDelegateKernels) have the same layout in both, so indexing
 * context->tensors is safe.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- The TFLite C ABI (common.h), only the parts a delegate touches ------------------------------ */

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

typedef struct TfLiteIntArray {
  int size;
  int data[];
} TfLiteIntArray;

typedef struct TfLiteQuantizationParams {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef struct TfLiteQuantization {
  int type;
  void* params;
} TfLiteQuantization;

struct TfLiteDelegate;
struct TfLiteContext;
struct TfLiteRegistration;

enum { kTfLiteMmapRo = 1 };             /* TfLiteAllocationType: read-only weights */
enum { kTfLiteBuiltinCustom = 32, kTfLiteBuiltinDelegate = 51 };

typedef struct TfLiteTensor {
  int type;
  void* data;
  TfLiteIntArray* dims;
  TfLiteQuantizationParams params;
  int allocation_type;
  size_t bytes;
  const void* allocation;
  const char* name;
  struct TfLiteDelegate* delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  TfLiteQuantization quantization;
  void* sparsity;
  const TfLiteIntArray* dims_signature;
} TfLiteTensor;

typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;
  void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
  struct TfLiteDelegate* delegate;
  bool might_have_side_effect;
} TfLiteNode;

typedef struct TfLiteRegistration {
  void* (*init)(struct TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(struct TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(struct TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(struct TfLiteContext* context, TfLiteNode* node);
  const char* (*profiling_string)(const struct TfLiteContext* context, const TfLiteNode* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external;            /* 2.11 reads up to here */
  void* (*async_kernel)(struct TfLiteContext* context, TfLiteNode* node);
  uint64_t inplace_operator;              /* 2.14 reads up to here */
} TfLiteRegistration;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext* context, TfLiteIntArray** execution_plan);
  TfLiteTensor* tensors;
  void* impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext*, TfLiteTensor* tensor, TfLiteIntArray* new_size);
  void (*ReportError)(struct TfLiteContext*, const char* msg, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext*, int tensors_to_add, int* first_new_tensor_index);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext*, int node_index, TfLiteNode** node,
                                         TfLiteRegistration** registration);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext*, TfLiteRegistration registration,
                                                        const TfLiteIntArray* nodes_to_replace,
                                                        struct TfLiteDelegate* delegate);
  /* later fields are not used */
} TfLiteContext;

typedef struct TfLiteDelegateParams {
  struct TfLiteDelegate* delegate;
  TfLiteIntArray* nodes_to_replace;
  TfLiteIntArray* input_tensors;
  TfLiteIntArray* output_tensors;
} TfLiteDelegateParams;

typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext* context, struct TfLiteDelegate* delegate);
  TfLiteStatus (*CopyFromBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int, TfLiteTensor*);
  TfLiteStatus (*CopyToBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int, TfLiteTensor*);
  void (*FreeBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int*);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

/* ---- The timing model (see farm_lab/standin_libedgetpu.py for each constant's source) ------------ */

#define CONV_OPS_PER_SECOND 2.1e12      /* SEEDS §2: "Edge TPU reaches ~2.0-2.1 TOPS" on conv stacks */
#define DENSE_OPS_PER_SECOND 0.6e9      /* SEEDS §2: dense layers "~0.6 GOPS" */
#define LINK_EFFICIENCY 0.79            /* SEEDS §2 fit: 300 conv layers 249.1 ms USB3 vs 397.0 ms USB2 */
#define INVOKE_BYTES 36864.0            /* SEEDS §2 fit: 10 layers 7.8 ms USB3 vs 8.5 ms USB2 */
#define PCIE_MBPS 5000                  /* the Dev Board's PCIe Gen2 x1 link; SEEDS §5: same latency as USB */
#define FOREIGN_OPS_PER_BYTE 270.0      /* MobileNet v1: 569 M multiply-adds over 4.2 M parameters */
#define ON_CHIP_BYTES (7 * 1024 * 1024) /* what farm's stand-in compiler offers for caching */

static const char kCustomOp[] = "edgetpu-custom-op";
static const char kMagic[8] = {'F', 'A', 'R', 'M', 'T', 'P', 'U', '1'};
static const char kVersion[] =
    "BuildLabel(farm-lab libedgetpu stand-in, simulated Edge TPU), RuntimeVersion(14)";

typedef struct Device {
  char kind[4];                 /* "usb" or "pci" */
  char id[64];                  /* sysfs port (2-1) or apex_N */
  char sort_key[PATH_MAX];
  int dfu;                      /* 1a6e:089a, waiting for its firmware */
  int speed_mbps;
} Device;

typedef struct Delegate {
  TfLiteDelegate base;          /* first: TFLite holds a pointer to it */
  Device device;
  char root[PATH_MAX];
  char state_path[PATH_MAX];
  double time_scale;
} Delegate;

typedef struct Kernel {
  Delegate* delegate;
  int nodes;
  double conv_ops, dense_ops;
  double on_chip_bytes, off_chip_bytes;
  uint64_t cache_identity;      /* what sits in the TPU's parameter cache after this kernel runs */
} Kernel;

/* ---- small helpers ---------------------------------------------------------------------------- */

static uint64_t fnv1a(const unsigned char* data, size_t length, uint64_t hash) {
  for (size_t i = 0; i < length; ++i) {
    hash ^= data[i];
    hash *= 1099511628211ULL;
  }
  return hash;
}

static uint64_t read_u64(const unsigned char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

static int read_text(const char* path, char* out, size_t size) {
  FILE* file = fopen(path, "r");
  if (!file) return -1;
  size_t n = fread(out, 1, size - 1, file);
  fclose(file);
  out[n] = '\0';
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = '\0';
  return 0;
}

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void sleep_until(int64_t deadline) {
  struct timespec t;
  t.tv_sec = deadline / 1000000000LL;
  t.tv_nsec = deadline % 1000000000LL;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {
  }
}

/* ---- finding the device, as libedgetpu enumerates it ------------------------------------------ */

static int by_key_descending(const void* a, const void* b) {
  const Device* x = (const Device*)a;
  const Device* y = (const Device*)b;
  if (x->dfu != y->dfu) return y->dfu - x->dfu;       /* devices waiting for firmware first */
  return strcmp(y->sort_key, x->sort_key);           /* then reverse sysfs-path order (libusb) */
}

static int list_usb(const char* root, Device* out, int max) {
  char base[PATH_MAX];
  snprintf(base, sizeof base, "%s/sys/bus/usb/devices", root);
  DIR* dir = opendir(base);
  if (!dir) return 0;
  int count = 0;
  struct dirent* entry;
  while ((entry = readdir(dir)) != NULL && count < max) {
    const char* name = entry->d_name;
    if (name[0] == '.' || strncmp(name, "usb", 3) == 0 || strchr(name, ':')) continue;
    char path[PATH_MAX + 64], vendor[16], product[16], speed[16];
    snprintf(path, sizeof path, "%s/%s/idVendor", base, name);
    if (read_text(path, vendor, sizeof vendor)) continue;
    snprintf(path, sizeof path, "%s/%s/idProduct", base, name);
    if (read_text(path, product, sizeof product)) continue;
    int app = strcasecmp(vendor, "18d1") == 0 && strcasecmp(product, "9302") == 0;
    int dfu = strcasecmp(vendor, "1a6e") == 0 && strcasecmp(product, "089a") == 0;
    if (!app && !dfu) continue;
    Device* device = &out[count++];
    memset(device, 0, sizeof *device);
    strcpy(device->kind, "usb");
    snprintf(device->id, sizeof device->id, "%s", name);
    device->dfu = dfu;
    snprintf(path, sizeof path, "%s/%s", base, name);
    if (!realpath(path, device->sort_key)) snprintf(device->sort_key, sizeof device->sort_key, "%s", path);
    snprintf(path, sizeof path, "%s/%s/speed", base, name);
    device->speed_mbps = read_text(path, speed, sizeof speed) ? 480 : atoi(speed);
  }
  closedir(dir);
  qsort(out, count, sizeof *out, by_key_descending);
  return count;
}

static int list_pci(const char* root, Device* out, int max) {
  int count = 0;
  for (int n = 0; n < 16 && count < max; ++n) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/dev/apex_%d", root, n);
    if (access(path, F_OK) != 0) continue;
    Device* device = &out[count++];
    memset(device, 0, sizeof *device);
    strcpy(device->kind, "pci");
    snprintf(device->id, sizeof device->id, "apex_%d", n);
    device->speed_mbps = PCIE_MBPS;
  }
  return count;
}

/* The device option's forms, as the real plugin documents them: "" (any), ":N" (Nth of any type),
 * "usb", "usb:N", "pci", "pci:N". Any TPU means the PCIe one first (a Dev Board prefers its own). */
static int choose(const char* root, const char* wanted, Device* chosen) {
  Device usb[32], pci[16], any[48];
  int n_usb = list_usb(root, usb, 32), n_pci = list_pci(root, pci, 16), n_any = 0;
  for (int i = 0; i < n_pci; ++i) any[n_any++] = pci[i];
  for (int i = 0; i < n_usb; ++i) any[n_any++] = usb[i];
  const Device* pool = any;
  int size = n_any;
  const char* index_text = NULL;
  if (wanted == NULL || wanted[0] == '\0') {
  } else if (strcmp(wanted, "usb") == 0) {
    pool = usb, size = n_usb;
  } else if (strcmp(wanted, "pci") == 0) {
    pool = pci, size = n_pci;
  } else if (strncmp(wanted, "usb:", 4) == 0) {
    pool = usb, size = n_usb, index_text = wanted + 4;
  } else if (strncmp(wanted, "pci:", 4) == 0) {
    pool = pci, size = n_pci, index_text = wanted + 4;
  } else if (wanted[0] == ':') {
    index_text = wanted + 1;
  } else {
    return -1;
  }
  int index = 0;
  if (index_text) {
    char* end = NULL;
    long value = strtol(index_text, &end, 10);
    if (*index_text == '\0' || *end != '\0' || value < 0) return -1;
    index = (int)value;
  }
  if (index >= size) return -1;
  *chosen = pool[index];
  return 0;
}

/* ---- the cache state a TPU keeps between invokes (shared by every process using the device) -------- */

/* Returns how many on-chip bytes must be loaded before this kernel's invoke: 0 when its parameters
 * (or its co-compiled group's) are still cached, all of them when another model ran last. The lock
 * is held until `unlock_device`, so two jobs on one TPU take turns as on real hardware. */
static int lock_device(Delegate* d, uint64_t identity, int* swapped) {
  int fd = open(d->state_path, O_RDWR | O_CREAT, 0666);
  *swapped = 1;
  if (fd < 0) return -1;
  flock(fd, LOCK_EX);
  char text[32] = {0};
  ssize_t n = pread(fd, text, sizeof text - 1, 0);
  char mine[32];
  snprintf(mine, sizeof mine, "%016llx", (unsigned long long)identity);
  if (n >= 16 && strncmp(text, mine, 16) == 0) {
    *swapped = 0;
  } else {
    if (ftruncate(fd, 0) == 0 && pwrite(fd, mine, 16, 0) == 16) {
    }
  }
  return fd;
}

static void unlock_device(int fd) {
  if (fd < 0) return;
  flock(fd, LOCK_UN);
  close(fd);
}

/* ---- the kernel that replaces the edgetpu-custom-op nodes ---------------------------------------- */

static void describe_node(Kernel* k, const unsigned char* data, size_t size) {
  k->nodes += 1;
  if (size >= 48 && memcmp(data, kMagic, 8) == 0) {
    /* farm's stand-in compiler: magic, group token, on-chip, off-chip, conv ops, dense ops, then params */
    uint64_t token = read_u64(data + 8);
    k->on_chip_bytes += (double)read_u64(data + 16);
    k->off_chip_bytes += (double)read_u64(data + 24);
    k->conv_ops += (double)read_u64(data + 32);
    k->dense_ops += (double)read_u64(data + 40);
    k->cache_identity = token ? token : fnv1a(data, size, k->cache_identity);
    return;
  }
  /* A model the real compiler wrote: its executable is opaque, so size stands for parameters. */
  double bytes = (double)size;
  double cached = bytes < ON_CHIP_BYTES ? bytes : ON_CHIP_BYTES;
  k->on_chip_bytes += cached;
  k->off_chip_bytes += bytes - cached;
  k->conv_ops += bytes * FOREIGN_OPS_PER_BYTE;
  k->cache_identity = fnv1a(data, size, k->cache_identity);
}

static void* kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  Kernel* k = (Kernel*)calloc(1, sizeof *k);
  if (!k) return NULL;
  k->delegate = (Delegate*)params->delegate;
  k->cache_identity = 1469598103934665603ULL;
  for (int i = 0; i < params->nodes_to_replace->size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, params->nodes_to_replace->data[i], &node, &reg) != kTfLiteOk)
      continue;
    describe_node(k, (const unsigned char*)node->custom_initial_data, (size_t)node->custom_initial_data_size);
  }
  return k;
}

static void kernel_free(TfLiteContext* context, void* buffer) {
  (void)context;
  free(buffer);
}

static TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  (void)context;
  (void)node;
  return kTfLiteOk;
}

static double link_seconds(const Delegate* d, double bytes) {
  return bytes * 8.0 / ((double)d->device.speed_mbps * 1e6 * LINK_EFFICIENCY);
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  int64_t started = now_ns();
  Kernel* k = (Kernel*)node->user_data;
  Delegate* d = k->delegate;
  uint64_t seed = 1469598103934665603ULL;
  double io_bytes = 0;
  for (int i = 0; i < node->inputs->size; ++i) {
    int index = node->inputs->data[i];
    if (index < 0) continue;
    const TfLiteTensor* t = &context->tensors[index];
    if (t->allocation_type == kTfLiteMmapRo || !t->data) continue;  /* weights stay on the device */
    io_bytes += (double)t->bytes;
    seed = fnv1a((const unsigned char*)t->data, t->bytes, seed);
  }
  for (int o = 0; o < node->outputs->size; ++o) {
    int index = node->outputs->data[o];
    if (index < 0) continue;
    TfLiteTensor* t = &context->tensors[index];
    if (!t->data) continue;
    io_bytes += (double)t->bytes;
    /* Deterministic outputs: a function of the inputs and the output's position only. */
    uint64_t x = seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(o + 1));
    unsigned char* out = (unsigned char*)t->data;
    for (size_t b = 0; b < t->bytes; ++b) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      out[b] = (unsigned char)(x >> 56);
    }
  }
  int swapped = 1;
  int fd = lock_device(d, k->cache_identity, &swapped);
  double seconds = k->nodes * link_seconds(d, INVOKE_BYTES) + link_seconds(d, io_bytes + k->off_chip_bytes) +
                   (swapped ? link_seconds(d, k->on_chip_bytes) : 0.0) + k->conv_ops / CONV_OPS_PER_SECOND +
                   k->dense_ops / DENSE_OPS_PER_SECOND;
  sleep_until(started + (int64_t)(seconds * d->time_scale * 1e9));
  unlock_device(fd);
  return kTfLiteOk;
}

/* ---- the delegate ------------------------------------------------------------------------------ */

static TfLiteStatus delegate_prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  TfLiteIntArray* plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk) return kTfLiteError;
  TfLiteIntArray* claimed = (TfLiteIntArray*)calloc(1, sizeof(int) * (size_t)(plan->size + 1));
  if (!claimed) return kTfLiteError;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, plan->data[i], &node, &reg) != kTfLiteOk) continue;
    if (reg->builtin_code == kTfLiteBuiltinCustom && reg->custom_name && strcmp(reg->custom_name, kCustomOp) == 0)
      claimed->data[claimed->size++] = plan->data[i];
  }
  TfLiteStatus status = kTfLiteOk;
  if (claimed->size > 0) {
    TfLiteRegistration kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.init = kernel_init;
    kernel.free = kernel_free;
    kernel.prepare = kernel_prepare;
    kernel.invoke = kernel_invoke;
    kernel.builtin_code = kTfLiteBuiltinDelegate;
    kernel.custom_name = "EdgeTpuDelegateForCustomOp";
    kernel.version = 1;
    /* One kernel per Edge TPU subgraph, as libedgetpu does: each keeps its own executable and cost. */
    int single[2] = {1, 0};
    for (int i = 0; i < claimed->size && status == kTfLiteOk; ++i) {
      single[1] = claimed->data[i];
      status = context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel, (TfLiteIntArray*)single, delegate);
    }
  }
  free(claimed);
  return status;
}

__attribute__((visibility("default"))) TfLiteDelegate* tflite_plugin_create_delegate(
    char** keys, char** values, size_t count, void (*report_error)(const char*)) {
  (void)report_error;  /* the real plugin returns NULL without a message when no device matches */
  const char* wanted = NULL;
  for (size_t i = 0; i < count; ++i)
    if (keys[i] && strcmp(keys[i], "device") == 0) wanted = values[i];
  const char* root = getenv("FARM_DEVICE_ROOT");
  if (!root || !root[0]) root = "/";
  Device device;
  if (choose(root, wanted, &device) != 0) return NULL;
  Delegate* d = (Delegate*)calloc(1, sizeof *d);
  if (!d) return NULL;
  d->device = device;
  snprintf(d->root, sizeof d->root, "%s", root);
  char folder[PATH_MAX];
  snprintf(folder, sizeof folder, "%s/var/lib/farm-lab", root);
  mkdir(folder, 0777);
  snprintf(folder, sizeof folder, "%s/var/lib/farm-lab/edgetpu", root);
  mkdir(folder, 0777);
  snprintf(d->state_path, sizeof d->state_path, "%s/%s-%s.cache", folder, device.kind, device.id);
  const char* scale = getenv("FARM_EDGETPU_TIME_SCALE");
  d->time_scale = scale && atof(scale) > 0 ? atof(scale) : 1.0;
  d->base.data_ = d;
  d->base.Prepare = delegate_prepare;
  /* kTfLiteDelegateFlagsAllowDynamicTensors, as the real delegate sets it: without it TFLite prepares every
   * node before delegating, and the still-unresolved edgetpu-custom-op fails that. */
  d->base.flags = 1;
  d->base.opaque_delegate_builder = NULL;
  return &d->base;
}

__attribute__((visibility("default"))) void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  free(delegate);
}

/* libedgetpu's own version call (edgetpu_c.h), which pycoral's get_runtime_version() reads: the agent
 * records it, and the words "stand-in" are what mark every result measured here as simulated. */
__attribute__((visibility("default"))) const char* edgetpu_version(void) { return kVersion; }

/* Which device a delegate opened, for tests and for farm's result ("usb 2-1 5000"). */
__attribute__((visibility("default"))) const char* farm_standin_device(const TfLiteDelegate* delegate) {
  static __thread char text[128];
  const Delegate* d = (const Delegate*)delegate;
  snprintf(text, sizeof text, "%s %s %d", d->device.kind, d->device.id, d->device.speed_mbps);
  return text;
}
