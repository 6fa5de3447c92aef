/* Command-line driver of the C reference: fg_main INPUT.bin N STEPS [REPEATS]
 * INPUT.bin holds N * STEPS * FG_D_IN little-endian int16 features. Prints, per clip, the
 * FG_CLASSES logits then the FG_HIDDEN state values on one line. With REPEATS > 0 it prints
 * instead the mean microseconds per clip over REPEATS passes through the N clips (after one
 * untimed pass). */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fastgrnn_int.h"
#include "fastgrnn_model.h"

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s INPUT.bin N STEPS [REPEATS]\n", argv[0]);
    return 2;
  }
  long n = atol(argv[2]), steps = atol(argv[3]), repeats = argc > 4 ? atol(argv[4]) : 0;
  size_t count = (size_t)(n * steps * FG_D_IN);
  int16_t *x = malloc(count * sizeof(int16_t));
  FILE *f = fopen(argv[1], "rb");
  if (!x || !f || fread(x, sizeof(int16_t), count, f) != count) {
    fprintf(stderr, "cannot read %zu int16 values from %s\n", count, argv[1]);
    return 2;
  }
  fclose(f);
  int32_t logits[FG_CLASSES], h[FG_HIDDEN];
  if (repeats > 0) {
    struct timespec t0, t1;
    volatile int sink = 0;
    for (long i = 0; i < n; i++) sink += fg_predict(x + i * steps * FG_D_IN, steps, logits, 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long r = 0; r < repeats; r++)
      for (long i = 0; i < n; i++) sink += fg_predict(x + i * steps * FG_D_IN, steps, logits, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
    printf("%.3f\n", us / (double)(repeats * n));
    return 0;
  }
  for (long i = 0; i < n; i++) {
    fg_predict(x + i * steps * FG_D_IN, steps, logits, h);
    for (int k = 0; k < FG_CLASSES; k++) printf("%d ", logits[k]);
    for (int j = 0; j < FG_HIDDEN; j++) printf("%d%c", h[j], j + 1 < FG_HIDDEN ? ' ' : '\n');
  }
  free(x);
  return 0;
}
