/* Integer-only FastRNN / FastGRNN keyword classifier (prunekit). The model lives in
 * fastgrnn_model.h, written by prunekit.quant.c_export; this is the reference implementation of
 * prunekit.quant.integer, bit for bit. */
#ifndef PRUNEKIT_FASTGRNN_INT_H
#define PRUNEKIT_FASTGRNN_INT_H

#include <stdint.h>

/* A matrix (rows x cols) of int8: dense row-major, or sparse by column: for each column j the
 * nonzero values in `vals` and their 1-based row indices in `idx`, each column ended by a 0. */
typedef struct {
  int rows, cols, sparse;
  const int8_t *vals;
  const uint8_t *idx;
  int32_t mult, shift; /* rescale of the product: (acc * mult + 2^(shift-1)) >> shift */
} fg_matrix;

/* Classify one clip: x holds steps * FG_D_IN int16 features (row-major, FG_IN_FRAC fraction
 * bits). Writes FG_CLASSES logits (scale S_c * 2^FG_ACT_FRAC) and, if h is not NULL, the last
 * hidden state (FG_HIDDEN values at scale 2^FG_ACT_FRAC). Returns the predicted class. */
int fg_predict(const int16_t *x, int steps, int32_t *logits, int32_t *h);

#endif
