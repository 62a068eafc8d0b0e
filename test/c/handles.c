/*
 * The handle checks of test/cases/handles.ts from C, linked against the library with nothing
 * else in the process: a destroyed, twice-destroyed, stale or forged handle is status 4 on
 * every call, and a graph whose member was destroyed is status 4. test/handles.test.ts builds
 * it with the system C compiler and runs it: `handles LIB` links the library given at build
 * time; exit 0 and "ok" on success, else 1 and the failed check on stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

uint32_t cz_model_create(const uint8_t *image, size_t image_len, uint64_t *handle_out,
                         char *err_buf, size_t err_len);
void cz_model_destroy(uintptr_t handle);
uint32_t cz_model_info(uintptr_t handle, uint64_t *out, size_t out_len);
uint32_t cz_forward(uintptr_t handle, const float *in, size_t in_len, float *out, size_t out_len);
uint32_t cz_forward_batch(uintptr_t handle, const float *in, size_t in_len, uint32_t batch,
                          float *out, size_t out_len);
uint32_t cz_reset(uintptr_t handle);
size_t cz_last_error(uintptr_t handle, char *buf, size_t buf_len);
uint32_t cz_graph_create(const uint32_t *desc, size_t desc_len, const uint64_t *handles,
                         size_t handle_count, uint64_t *graph_out, char *err_buf, size_t err_len);
void cz_graph_destroy(uintptr_t graph);
uint32_t cz_graph_step(uintptr_t graph, const float *in, size_t in_len, float *out,
                       size_t out_len);
size_t cz_graph_last_error(uintptr_t graph, char *buf, size_t buf_len);

static int failures = 0;

#define CHECK(cond, what)                                                                      \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "handles.c:%d: %s (%s)\n", __LINE__, what, #cond);                       \
      failures++;                                                                              \
    }                                                                                          \
  } while (0)

/* A dense layer 2 -> 1 with a bias: header, one layer record, W (2 values), b (1 value). */
static void dense_image(uint32_t words[29]) {
  const uint32_t header[8] = {0x4D495A43u, 1, 8, 1, 2, 1, 1, 29 * 4};
  memcpy(words, header, sizeof header);
  uint32_t *record = words + 8;
  memset(record, 0, 16 * 4);
  record[0] = 1; /* dense */
  record[2] = 2; /* in */
  record[3] = 1; /* out */
  record[4] = 1; /* bias */
  record[14] = 2; /* tensor count */
  const float w[2] = {0.5f, -0.25f}, b = 0.125f;
  words[24] = 2;
  memcpy(&words[25], w, sizeof w);
  words[27] = 1;
  memcpy(&words[28], &b, sizeof b);
}

static void expect_bad_handle(uintptr_t h, const char *what) {
  float x[4] = {1, 2, 3, 4}, y[2];
  uint64_t info[11];
  char msg[128];
  CHECK(cz_model_info(h, info, 11) == 4, what);
  CHECK(cz_forward(h, x, 2, y, 1) == 4, what);
  CHECK(cz_forward_batch(h, x, 4, 2, y, 2) == 4, what);
  CHECK(cz_reset(h) == 4, what);
  size_t n = cz_last_error(h, msg, sizeof msg);
  CHECK(n > 0 && strncmp(msg, "invalid handle", 14) == 0, what);
}

int main(void) {
  uint32_t image[29];
  dense_image(image);
  uint64_t handle = 0;
  char err[256];
  CHECK(cz_model_create((const uint8_t *)image, sizeof image, &handle, err, sizeof err) == 0,
        "create");
  float x[2] = {1, 2}, y[1] = {0};
  CHECK(cz_forward((uintptr_t)handle, x, 2, y, 1) == 0 && y[0] == 0.125f, "forward: 0.5 - 0.5 + 0.125");

  cz_model_destroy((uintptr_t)handle);
  expect_bad_handle((uintptr_t)handle, "destroyed");
  cz_model_destroy((uintptr_t)handle);
  expect_bad_handle((uintptr_t)handle, "destroyed twice");

  uint64_t again = 0;
  CHECK(cz_model_create((const uint8_t *)image, sizeof image, &again, NULL, 0) == 0, "create again");
  CHECK(again != handle, "a new handle");
  expect_bad_handle((uintptr_t)handle, "stale beside a new model");
  CHECK(cz_forward((uintptr_t)again, x, 2, y, 1) == 0, "the new model runs");

  /* Forged: an address, neighbours of a live handle, arbitrary values. */
  const uintptr_t forged[] = {1, 4096, (uintptr_t)&image, (uintptr_t)again + 1,
                              (uintptr_t)again ^ (1u << 16), (uintptr_t)again ^ (3ull << 48),
                              UINTPTR_MAX, 0x0123456789abcdefull};
  for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
    expect_bad_handle(forged[i], "forged");
    cz_model_destroy(forged[i]);
    cz_graph_destroy(forged[i]);
  }
  CHECK(cz_forward((uintptr_t)again, x, 2, y, 1) == 0, "the live model after forged destroys");

  /* A one-node graph; its model destroyed under it. */
  const uint32_t desc[10] = {0x52475A43u, 1, 1, 2, 0, 1, 0xFFFFFFFFu, 0, 2, 0};
  uint64_t graph = 0;
  CHECK(cz_graph_create(desc, 10, &again, 1, &graph, err, sizeof err) == 0, "graph create");
  CHECK(cz_graph_step((uintptr_t)graph, x, 2, y, 1) == 0, "graph step");
  cz_model_destroy((uintptr_t)again);
  CHECK(cz_graph_step((uintptr_t)graph, x, 2, y, 1) == 4, "graph step after its model's destroy");
  size_t n = cz_graph_last_error((uintptr_t)graph, err, sizeof err);
  CHECK(n > 0 && strstr(err, "node 0's model was destroyed") != NULL, "graph message");
  cz_graph_destroy((uintptr_t)graph);
  CHECK(cz_graph_step((uintptr_t)graph, x, 2, y, 1) == 4, "step on a destroyed graph");
  cz_graph_destroy((uintptr_t)graph);

  if (failures != 0) return 1;
  puts("ok");
  return 0;
}
