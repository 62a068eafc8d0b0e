/*
 * Runs the emotion pipeline (or one of its models) through libcadenza's C ABI with nothing else
 * in the process, for callgrind and for native timing. scripts/profile.sh builds and runs it.
 *
 *   profile-driver LIB DIR graph STEPS        every node, one cz_graph_step per step
 *   profile-driver LIB DIR model K STEPS      node K's model alone, one cz_forward per step
 *
 * DIR holds what scripts/profile-images.ts wrote for one precision. Before measuring, the
 * driver runs CHECK_STEPS graph steps from a reset state and requires every output to equal
 * DIR/expected.f32 bit for bit (the same library and images as the TypeScript Pipeline), then
 * resets and runs a few untimed steps. Under valgrind it turns callgrind's collection on
 * for the STEPS measured steps only (run with --collect-atstart=no), so counts are per step of
 * a warm process; natively it prints the median and minimum ns per step.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <valgrind/callgrind.h>

enum { NODES_MAX = 8, CHECK_STEPS = 16, INPUTS = 64, ERR_LEN = 512 };

/* Untimed steps first: natively enough to settle caches and branch predictors; under valgrind,
 * where a step costs ~0.1 s, enough to bring the simulated caches to their steady state (one
 * step already cycles every weight through them). */
enum { WARMUP_STEPS_NATIVE = 200, WARMUP_STEPS_VALGRIND = 20 };

typedef uint32_t (*create_fn)(const uint8_t *, size_t, uint64_t *, char *, size_t);
typedef uint32_t (*info_fn)(uintptr_t, uint64_t *, size_t);
typedef uint32_t (*forward_fn)(uintptr_t, const float *, size_t, float *, size_t);
typedef uint32_t (*reset_fn)(uintptr_t);
typedef uint32_t (*graph_create_fn)(const uint32_t *, size_t, const uint64_t *, size_t,
                                    uint64_t *, char *, size_t);
typedef uint32_t (*graph_info_fn)(uintptr_t, uint64_t *, size_t);
typedef uint32_t (*graph_step_fn)(uintptr_t, const float *, size_t, float *, size_t);

struct Api {
  create_fn create;
  info_fn info;
  forward_fn forward;
  reset_fn reset;
  graph_create_fn graph_create;
  graph_info_fn graph_info;
  graph_step_fn graph_step;
  reset_fn graph_reset;
};

static void die(const char *what, const char *detail) {
  fprintf(stderr, "profile-driver: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static void *symbol(void *lib, const char *name) {
  void *s = dlsym(lib, name);
  if (s == NULL) die("missing symbol", name);
  return s;
}

static struct Api open_api(const char *path) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) die("dlopen", dlerror());
  struct Api api = {
      .create = (create_fn)symbol(lib, "cz_model_create"),
      .info = (info_fn)symbol(lib, "cz_model_info"),
      .forward = (forward_fn)symbol(lib, "cz_forward"),
      .reset = (reset_fn)symbol(lib, "cz_reset"),
      .graph_create = (graph_create_fn)symbol(lib, "cz_graph_create"),
      .graph_info = (graph_info_fn)symbol(lib, "cz_graph_info"),
      .graph_step = (graph_step_fn)symbol(lib, "cz_graph_step"),
      .graph_reset = (reset_fn)symbol(lib, "cz_graph_reset"),
  };
  return api;
}

/* Reads a whole file; *len_out gets its byte count. */
static uint8_t *read_file(const char *dir, const char *name, size_t *len_out) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL) die("cannot open", path);
  if (fseek(f, 0, SEEK_END) != 0) die("cannot seek", path);
  long len = ftell(f);
  if (len <= 0) die("empty file", path);
  rewind(f);
  uint8_t *bytes = malloc((size_t)len);
  if (bytes == NULL || fread(bytes, 1, (size_t)len, f) != (size_t)len) die("cannot read", path);
  fclose(f);
  *len_out = (size_t)len;
  return bytes;
}

/* The same inputs as checkInput in scripts/profile-images.ts. */
static void check_input(uint32_t step, float *into, size_t len) {
  uint32_t state = step * 2654435761u + 12345u;
  for (size_t i = 0; i < len; i++) {
    state = state * 1664525u + 1013904223u;
    into[i] = (float)((int32_t)(state >> 16) - 32768) / 32768.0f;
  }
}

struct Pipeline {
  size_t node_count;
  uint64_t handles[NODES_MAX];
  size_t input_len[NODES_MAX];
  size_t output_len[NODES_MAX];
  uint64_t graph;
  size_t graph_input_len;
  size_t graph_output_len;
};

static size_t count_nodes(const char *dir) {
  size_t len = 0;
  uint8_t *text = read_file(dir, "nodes.txt", &len);
  size_t lines = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  free(text);
  if (lines == 0 || lines > NODES_MAX) die("nodes.txt", "expected 1..8 lines");
  return lines;
}

static void load_models(const struct Api *api, const char *dir, struct Pipeline *p) {
  char err[ERR_LEN];
  p->node_count = count_nodes(dir);
  for (size_t i = 0; i < p->node_count; i++) {
    char name[32];
    snprintf(name, sizeof name, "node%zu.img", i);
    size_t len = 0;
    uint8_t *image = read_file(dir, name, &len);
    if (api->create(image, len, &p->handles[i], err, sizeof err) != 0) die(name, err);
    free(image);
    uint64_t info[3];
    if (api->info((uintptr_t)p->handles[i], info, 3) != 0) die("cz_model_info", name);
    p->input_len[i] = (size_t)info[1];
    p->output_len[i] = (size_t)info[2];
  }
}

static void load_graph(const struct Api *api, const char *dir, struct Pipeline *p) {
  char err[ERR_LEN];
  size_t len = 0;
  uint8_t *words = read_file(dir, "graph.u32", &len);
  if (len % 4 != 0) die("graph.u32", "length is not a whole number of words");
  uint32_t status = api->graph_create((const uint32_t *)words, len / 4, p->handles,
                                      p->node_count, &p->graph, err, sizeof err);
  if (status != 0) die("cz_graph_create", err);
  free(words);
  uint64_t info[4];
  if (api->graph_info((uintptr_t)p->graph, info, 4) != 0) die("cz_graph_info", NULL);
  p->graph_input_len = (size_t)info[2];
  p->graph_output_len = (size_t)info[3];
}

/* CHECK_STEPS graph steps from reset must give expected.f32 exactly. */
static void check_outputs(const struct Api *api, const char *dir, const struct Pipeline *p) {
  size_t len = 0;
  float *expected = (float *)read_file(dir, "expected.f32", &len);
  if (len != p->graph_output_len * sizeof(float)) die("expected.f32", "length differs");
  float *in = malloc(p->graph_input_len * sizeof(float));
  float *out = malloc(len);
  if (api->graph_reset((uintptr_t)p->graph) != 0) die("cz_graph_reset", NULL);
  for (uint32_t s = 0; s < CHECK_STEPS; s++) {
    check_input(s, in, p->graph_input_len);
    uint32_t status =
        api->graph_step((uintptr_t)p->graph, in, p->graph_input_len, out, p->graph_output_len);
    if (status != 0) die("cz_graph_step", "status not 0");
  }
  if (memcmp(out, expected, len) != 0) die("check", "outputs differ from expected.f32");
  for (size_t i = 0; i < p->node_count; i++) api->reset((uintptr_t)p->handles[i]);
  if (api->graph_reset((uintptr_t)p->graph) != 0) die("cz_graph_reset", NULL);
  free(expected);
  free(in);
  free(out);
}

struct Run {
  const struct Api *api;
  const struct Pipeline *p;
  long node; /* -1: the whole graph */
  float *inputs;
  size_t input_len;
  float *out;
  size_t out_len;
};

static inline void one_step(const struct Run *r, uint32_t s) {
  const float *in = r->inputs + (size_t)(s % INPUTS) * r->input_len;
  uint32_t status;
  if (r->node < 0) {
    status = r->api->graph_step((uintptr_t)r->p->graph, in, r->input_len, r->out, r->out_len);
  } else {
    uintptr_t handle = (uintptr_t)r->p->handles[r->node];
    status = r->api->forward(handle, in, r->input_len, r->out, r->out_len);
  }
  if (status != 0) die("step", "status not 0");
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void measure(const struct Run *r, uint32_t steps) {
  uint32_t warmup = RUNNING_ON_VALGRIND ? WARMUP_STEPS_VALGRIND : WARMUP_STEPS_NATIVE;
  for (uint32_t s = 0; s < warmup; s++) one_step(r, s);
  if (RUNNING_ON_VALGRIND) {
    CALLGRIND_TOGGLE_COLLECT;
    for (uint32_t s = 0; s < steps; s++) one_step(r, s);
    CALLGRIND_TOGGLE_COLLECT;
    printf("measured %u steps under callgrind\n", steps);
    return;
  }
  uint64_t *ns = malloc(steps * sizeof(uint64_t));
  for (uint32_t s = 0; s < steps; s++) {
    uint64_t start = now_ns();
    one_step(r, s);
    ns[s] = now_ns() - start;
  }
  qsort(ns, steps, sizeof(uint64_t), compare_u64);
  printf("steps %u median_ns %llu min_ns %llu p99_ns %llu\n", steps,
         (unsigned long long)ns[steps / 2], (unsigned long long)ns[0],
         (unsigned long long)ns[(size_t)(steps * 0.99)]);
  free(ns);
}

int main(int argc, char **argv) {
  int graph_mode = argc == 5 && strcmp(argv[3], "graph") == 0;
  int model_mode = argc == 6 && strcmp(argv[3], "model") == 0;
  if (!graph_mode && !model_mode) {
    fprintf(stderr, "usage: %s LIB DIR graph STEPS | LIB DIR model K STEPS\n", argv[0]);
    return 2;
  }
  struct Api api = open_api(argv[1]);
  struct Pipeline p = {0};
  load_models(&api, argv[2], &p);
  load_graph(&api, argv[2], &p);
  check_outputs(&api, argv[2], &p);

  struct Run r = {.api = &api, .p = &p, .node = graph_mode ? -1 : atol(argv[4])};
  if (r.node >= (long)p.node_count) die("model", "K is not a node index");
  r.input_len = graph_mode ? p.graph_input_len : p.input_len[r.node];
  r.out_len = graph_mode ? p.graph_output_len : p.output_len[r.node];
  long steps = atol(argv[graph_mode ? 4 : 5]);
  if (steps < 1 || steps > 10000000) die("STEPS", "expected 1..10000000");
  r.inputs = malloc((size_t)INPUTS * r.input_len * sizeof(float));
  r.out = malloc(r.out_len * sizeof(float));
  for (uint32_t k = 0; k < INPUTS; k++) check_input(k, r.inputs + k * r.input_len, r.input_len);
  measure(&r, (uint32_t)steps);
  return 0;
}
