/* qcc runtime: TFLM's integer LSTM (qcc_lstm.h). */
#include "qcc_lstm.h"

#include <stddef.h>

#include "qcc_dsp.h"
#include "qcc_requant_single.h" /* qcc_wrap_u32_to_i32 */
#include "qcc_requant_tflm.h"   /* qcc_tflm_scale */
#include "qcc_s16.h"            /* qcc_sigmoid_s16 */

/* TFLM's MultiplyByQuantizedMultiplier(int32 x, M0, e) with its constants worked out once for a run of values:
 * x * 2^e wrapping in int32 for e > 0 (as its C++ does on every target), then RDBPOT(SRDHM(., M0), -e) */
typedef struct {
    qcc_tflm_scaler scaler;
    int left;
} qcc_lstm_scale;

static qcc_lstm_scale qcc_lstm_scale_of(int32_t m0, int32_t e)
{
    qcc_lstm_scale s;
    s.scaler = qcc_tflm_scaler_of(m0, e > 0 ? 0 : (int)-e);
    s.left = e > 0 ? (int)e : 0;
    return s;
}

static inline int32_t qcc_lstm_mbqm(const qcc_lstm_scale *s, int32_t x)
{
    return qcc_tflm_scaler_apply(&s->scaler, qcc_wrap_u32_to_i32((uint32_t)x << s->left));
}

static int32_t qcc_lstm_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* x (n codes) as int16, zeros up to n rounded to 4: the column every row of a gate's weights multiplies */
static void qcc_lstm_widen(const int8_t *x, int32_t n, int16_t *wide)
{
    int32_t k;
    for (k = 0; k < n; ++k) {
        wide[k] = x[k];
    }
    for (; k & 3; ++k) {
        wide[k] = 0;
    }
}

/* out[u] = clamp16(MBQM(acc_const[u] + sum(w[u][k] * x[k]), m0, e)), the sums modulo 2^32 (TFLM's int32
 * accumulator wraps there too); each row of w holds k4 taps (zeros after cols) in the order 0, 2, 1, 3 by
 * groups of 4, so that SXTB16 of a word gives the int16 pairs SMLAD takes */
static void qcc_lstm_matrix(const int8_t *w, const int16_t *x, int32_t rows, int32_t k4, const int32_t *acc_const,
                            int32_t m0, int32_t e, int16_t *out)
{
    const qcc_lstm_scale scale = qcc_lstm_scale_of(m0, e);
    int32_t u = 0, k;
#if QCC_DSP
    for (; u + 3 < rows; u += 4, w += 4 * k4) { /* four rows per pass: each pair of x loaded once for them */
        int32_t a = acc_const[u], b = acc_const[u + 1], c = acc_const[u + 2], d = acc_const[u + 3];
        for (k = 0; k < k4; k += 4) {
            const int32_t x01 = (int32_t)qcc_load_u32(x + k), x23 = (int32_t)qcc_load_u32(x + k + 2);
            const uint32_t pa = qcc_load_u32(w + k), pb = qcc_load_u32(w + k4 + k);
            const uint32_t pc = qcc_load_u32(w + 2 * k4 + k), pd = qcc_load_u32(w + 3 * k4 + k);
            a = __smlad(x01, __sxtb16(pa), a);
            b = __smlad(x01, __sxtb16(pb), b);
            c = __smlad(x01, __sxtb16(pc), c);
            d = __smlad(x01, __sxtb16(pd), d);
            a = __smlad(x23, qcc_sxtb16_ror8(pa), a);
            b = __smlad(x23, qcc_sxtb16_ror8(pb), b);
            c = __smlad(x23, qcc_sxtb16_ror8(pc), c);
            d = __smlad(x23, qcc_sxtb16_ror8(pd), d);
        }
        out[u] = (int16_t)qcc_lstm_clamp(qcc_lstm_mbqm(&scale, a), INT16_MIN, INT16_MAX);
        out[u + 1] = (int16_t)qcc_lstm_clamp(qcc_lstm_mbqm(&scale, b), INT16_MIN, INT16_MAX);
        out[u + 2] = (int16_t)qcc_lstm_clamp(qcc_lstm_mbqm(&scale, c), INT16_MIN, INT16_MAX);
        out[u + 3] = (int16_t)qcc_lstm_clamp(qcc_lstm_mbqm(&scale, d), INT16_MIN, INT16_MAX);
    }
#endif
    for (; u < rows; ++u, w += k4) {
#if QCC_DSP
        int32_t acc = acc_const[u];
        for (k = 0; k < k4; k += 4) {
            const uint32_t packed = qcc_load_u32(w + k);
            acc = __smlad((int32_t)qcc_load_u32(x + k), __sxtb16(packed), acc);
            acc = __smlad((int32_t)qcc_load_u32(x + k + 2), qcc_sxtb16_ror8(packed), acc);
        }
#else
        uint32_t sum = (uint32_t)acc_const[u];
        int32_t acc;
        for (k = 0; k < k4; k += 4) {
            sum += (uint32_t)((int32_t)w[k] * x[k] + (int32_t)w[k + 2] * x[k + 1] + (int32_t)w[k + 1] * x[k + 2]
                              + (int32_t)w[k + 3] * x[k + 3]);
        }
        acc = qcc_wrap_u32_to_i32(sum);
#endif
        out[u] = (int16_t)qcc_lstm_clamp(qcc_lstm_mbqm(&scale, acc), INT16_MIN, INT16_MAX);
    }
}

static void qcc_lstm_step(const qcc_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c, int16_t *gates,
                          int16_t *recurrent, int16_t *x_wide, int16_t *h_wide)
{
    const int32_t units = p->units, features4 = (p->features + 3) & ~3, units4 = (units + 3) & ~3;
    const qcc_lstm_scale forget_scale = qcc_lstm_scale_of(p->forget_m0, p->forget_e);
    const qcc_lstm_scale input_scale = qcc_lstm_scale_of(p->input_m0_mul, p->input_e_mul);
    const qcc_lstm_scale hidden_scale = qcc_lstm_scale_of(p->hidden_m0, p->hidden_e);
    qcc_sigmoid16_params act;
    int32_t g, u;
    act.count = units;
    act.multiplier = 3; /* the gates' pre-activations are Q3.12: TFLM's multiplier 0, shift 0 */
    act.shift = 0;
    act.rounding = 0;
    act.table = p->sigmoid_table;
    qcc_lstm_widen(x, p->features, x_wide);
    qcc_lstm_widen(h, units, h_wide);
    /* every gate reads the hidden state of the previous step: all four first */
    for (g = 0; g < 4; ++g) {
        int16_t *gate = gates + g * units, *other = recurrent + g * units;
        qcc_lstm_matrix(p->input_weights + (size_t)g * (size_t)units * (size_t)features4, x_wide, units, features4,
                        p->input_acc_const + g * units, p->input_m0[g], p->input_e[g], gate);
        qcc_lstm_matrix(p->recurrent_weights + (size_t)g * (size_t)units * (size_t)units4, h_wide, units, units4,
                        p->recurrent_acc_const + g * units, p->recurrent_m0[g], p->recurrent_e[g], other);
        for (u = 0; u < units; ++u) {
            gate[u] = (int16_t)qcc_lstm_clamp(gate[u] + other[u], INT16_MIN, INT16_MAX);
        }
        act.tanh = g == 2; /* the cell gate: TANH; the others LOGISTIC */
        qcc_sigmoid_s16(&act, gate, gate);
    }
    for (u = 0; u < units; ++u) {
        const int32_t forget = gates[u], input = gates[units + u], cell = gates[2 * units + u];
        int32_t next = qcc_lstm_clamp(qcc_lstm_mbqm(&forget_scale, forget * c[u]), INT16_MIN, INT16_MAX);
        next += qcc_lstm_clamp(qcc_lstm_mbqm(&input_scale, input * cell), INT16_MIN, INT16_MAX);
        next = qcc_lstm_clamp(next, INT16_MIN, INT16_MAX);
        if (p->cell_clip > 0) {
            next = qcc_lstm_clamp(next, -p->cell_clip, p->cell_clip);
        }
        c[u] = (int16_t)next;
    }
    act.multiplier = p->cell_tanh_multiplier == 0 ? 3 << p->cell_tanh_shift : p->cell_tanh_multiplier;
    act.shift = p->cell_tanh_multiplier == 0 ? 0 : p->cell_tanh_shift;
    act.rounding = act.shift > 0 ? 1 << (act.shift - 1) : 0;
    act.tanh = 1;
    qcc_sigmoid_s16(&act, c, recurrent); /* tanh(c), into the scratch */
    for (u = 0; u < units; ++u) {
        const int32_t product = recurrent[u] * gates[3 * units + u];
        const int32_t code = qcc_lstm_mbqm(&hidden_scale, product);
        h[u] = (int8_t)qcc_lstm_clamp(qcc_wrap_u32_to_i32((uint32_t)code + (uint32_t)p->hidden_zero), INT8_MIN, INT8_MAX);
    }
}

void qcc_lstm_s8(const qcc_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c, int8_t *y, int32_t *scratch)
{
    int16_t *gates = (int16_t *)(void *)scratch, *recurrent = gates + 4 * p->units;
    int16_t *x_wide = recurrent + 4 * p->units, *h_wide = x_wide + ((p->features + 3) & ~3);
    int32_t n, t, u;
    for (n = 0; n < p->batch; ++n) {
        int8_t *hn = h + (size_t)n * (size_t)p->units;
        int16_t *cn = c + (size_t)n * (size_t)p->units;
        for (t = 0; t < p->steps; ++t) {
            const size_t at = p->time_major ? (size_t)t * (size_t)p->batch + (size_t)n
                                            : (size_t)n * (size_t)p->steps + (size_t)t;
            qcc_lstm_step(p, x + at * (size_t)p->features, hn, cn, gates, recurrent, x_wide, h_wide);
            for (u = 0; u < p->units; ++u) {
                y[at * (size_t)p->units + (size_t)u] = hn[u];
            }
        }
    }
}
