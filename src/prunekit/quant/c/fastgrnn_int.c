/* Reference integer forward pass of prunekit.quant.integer (see its docstring for the equations).
 * Only integer arithmetic: int8 weights, int32 accumulators, int64 for rescaling products. */
#include <string.h>

#include "fastgrnn_int.h"
#include "fastgrnn_model.h"

#define FG_ONE ((int32_t)1 << FG_ACT_FRAC)

static int32_t rq(int64_t acc, int32_t mult, int32_t shift) {
  return (int32_t)((acc * mult + ((int64_t)1 << (shift - 1))) >> shift);
}

static int32_t clip(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* out = rq(m v): int32 accumulation over the nonzeros (dense or sparse by column). */
static void matvec(const fg_matrix *m, const int32_t *v, int32_t *out) {
  int32_t acc[FG_MAX_DIM];
  memset(acc, 0, sizeof(acc));
  if (m->sparse) {
    const int8_t *val = m->vals;
    const uint8_t *ix = m->idx;
    for (int j = 0; j < m->cols; j++) {
      for (; *ix != 0; ix++, val++) acc[*ix - 1] += (int32_t)*val * v[j];
      ix++; /* the column's terminating 0 */
    }
  } else {
    for (int r = 0; r < m->rows; r++)
      for (int j = 0; j < m->cols; j++) acc[r] += (int32_t)m->vals[r * m->cols + j] * v[j];
  }
  for (int r = 0; r < m->rows; r++) out[r] = rq(acc[r], m->mult, m->shift);
}

/* Apply n factors in order: v (FG_MAX_DIM buffer) -> out. */
static void factors(const fg_matrix *mats, int n, const int32_t *v, int32_t *out) {
  int32_t tmp[FG_MAX_DIM];
  if (n == 1) {
    matvec(&mats[0], v, out);
    return;
  }
  matvec(&mats[0], v, tmp);
  matvec(&mats[1], tmp, out);
}

static void step(const int32_t *x, int32_t *h) {
  int32_t wx[FG_MAX_DIM], uh[FG_MAX_DIM];
  factors(fg_w, FG_N_W, x, wx);
  factors(fg_u, FG_N_U, h, uh);
  for (int i = 0; i < FG_HIDDEN; i++) {
    int32_t pre = wx[i] + uh[i];
    int32_t c = clip(pre + rq(fg_bias_update[i], FG_BIAS_MULT, FG_BIAS_SHIFT), -FG_ONE, FG_ONE);
#if FG_IS_GRNN
    int32_t z = clip((pre + rq(fg_bias_gate[i], FG_BIAS_MULT, FG_BIAS_SHIFT) + FG_ONE) >> 1, 0,
                     FG_ONE);
    int32_t g = rq((int64_t)FG_ZETA * (FG_ONE - z) + (int64_t)FG_NU * FG_ONE, FG_SCALAR_MULT,
                   FG_SCALAR_SHIFT);
    h[i] = (int32_t)(((int64_t)z * h[i] + (int64_t)g * c + (FG_ONE >> 1)) >> FG_ACT_FRAC);
#else
    h[i] = rq((int64_t)FG_BETA * h[i] + (int64_t)FG_ALPHA * c, FG_SCALAR_MULT, FG_SCALAR_SHIFT);
#endif
  }
}

int fg_predict(const int16_t *x, int steps, int32_t *logits, int32_t *h_out) {
  int32_t h[FG_MAX_DIM], xt[FG_MAX_DIM];
  memset(h, 0, sizeof(h));
  for (int t = 0; t < steps; t++) {
    for (int d = 0; d < FG_D_IN; d++) xt[d] = x[t * FG_D_IN + d];
    step(xt, h);
  }
  int best = 0;
  for (int k = 0; k < FG_CLASSES; k++) {
    int32_t acc = (int32_t)fg_head_b[k] * FG_ONE;
    for (int j = 0; j < FG_HIDDEN; j++) acc += (int32_t)fg_head_w[k * FG_HIDDEN + j] * h[j];
    logits[k] = acc;
    if (acc > logits[best]) best = k;
  }
  if (h_out) memcpy(h_out, h, sizeof(int32_t) * FG_HIDDEN);
  return best;
}
