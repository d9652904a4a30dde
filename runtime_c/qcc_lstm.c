/* qcc runtime: TFLM's integer LSTM (qcc_lstm.h). */
#include "qcc_lstm.h"

#include <stddef.h>

#include "qcc_requant_single.h" /* qcc_wrap_u32_to_i32 */
#include "qcc_requant_tflm.h"   /* qcc_tflm_scale */
#include "qcc_s16.h"            /* qcc_sigmoid_s16 */

/* TFLM's MultiplyByQuantizedMultiplier(int32 x, M0, e): x * 2^e wrapping in int32 for e > 0 (as its C++ does
 * on every target), then RDBPOT(SRDHM(., M0), -e) */
static int32_t qcc_lstm_mbqm(int32_t x, int32_t m0, int32_t e)
{
    const int32_t shifted = e > 0 ? qcc_wrap_u32_to_i32((uint32_t)x << e) : x;
    return qcc_tflm_scale(shifted, m0, e > 0 ? 0 : (int)-e);
}

static int32_t qcc_lstm_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* out[u] = clamp16(MBQM(acc_const[u] + sum(w[u][k] * x[k]), m0, e)), int32 sums wrapping */
static void qcc_lstm_matrix(const int8_t *w, const int8_t *x, int32_t rows, int32_t cols, const int32_t *acc_const,
                            int32_t m0, int32_t e, int16_t *out)
{
    int32_t u, k;
    for (u = 0; u < rows; ++u, w += cols) {
        uint32_t acc = (uint32_t)acc_const[u];
        for (k = 0; k < cols; ++k) {
            acc += (uint32_t)((int32_t)w[k] * x[k]);
        }
        out[u] = (int16_t)qcc_lstm_clamp(qcc_lstm_mbqm(qcc_wrap_u32_to_i32(acc), m0, e), INT16_MIN, INT16_MAX);
    }
}

static void qcc_lstm_step(const qcc_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c, int16_t *gates,
                          int16_t *recurrent)
{
    const int32_t units = p->units;
    qcc_sigmoid16_params act;
    int32_t g, u;
    act.count = units;
    act.multiplier = 3; /* the gates' pre-activations are Q3.12: TFLM's multiplier 0, shift 0 */
    act.shift = 0;
    act.rounding = 0;
    act.table = p->sigmoid_table;
    /* every gate reads the hidden state of the previous step: all four first */
    for (g = 0; g < 4; ++g) {
        int16_t *gate = gates + g * units, *other = recurrent + g * units;
        qcc_lstm_matrix(p->input_weights + (size_t)g * (size_t)units * (size_t)p->features, x, units, p->features,
                        p->input_acc_const + g * units, p->input_m0[g], p->input_e[g], gate);
        qcc_lstm_matrix(p->recurrent_weights + (size_t)g * (size_t)units * (size_t)units, h, units, units,
                        p->recurrent_acc_const + g * units, p->recurrent_m0[g], p->recurrent_e[g], other);
        for (u = 0; u < units; ++u) {
            gate[u] = (int16_t)qcc_lstm_clamp(gate[u] + other[u], INT16_MIN, INT16_MAX);
        }
        act.tanh = g == 2; /* the cell gate: TANH; the others LOGISTIC */
        qcc_sigmoid_s16(&act, gate, gate);
    }
    for (u = 0; u < units; ++u) {
        const int32_t forget = gates[u], input = gates[units + u], cell = gates[2 * units + u];
        int32_t next = qcc_lstm_clamp(qcc_lstm_mbqm(forget * c[u], p->forget_m0, p->forget_e), INT16_MIN, INT16_MAX);
        next += qcc_lstm_clamp(qcc_lstm_mbqm(input * cell, p->input_m0_mul, p->input_e_mul), INT16_MIN, INT16_MAX);
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
        const int32_t code = qcc_lstm_mbqm(product, p->hidden_m0, p->hidden_e);
        h[u] = (int8_t)qcc_lstm_clamp(qcc_wrap_u32_to_i32((uint32_t)code + (uint32_t)p->hidden_zero), INT8_MIN, INT8_MAX);
    }
}

void qcc_lstm_s8(const qcc_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c, int8_t *y, int32_t *scratch)
{
    int16_t *gates = (int16_t *)(void *)scratch, *recurrent = gates + 4 * p->units;
    int32_t n, t, u;
    for (n = 0; n < p->batch; ++n) {
        int8_t *hn = h + (size_t)n * (size_t)p->units;
        int16_t *cn = c + (size_t)n * (size_t)p->units;
        for (t = 0; t < p->steps; ++t) {
            const size_t at = p->time_major ? (size_t)t * (size_t)p->batch + (size_t)n
                                            : (size_t)n * (size_t)p->steps + (size_t)t;
            qcc_lstm_step(p, x + at * (size_t)p->features, hn, cn, gates, recurrent);
            for (u = 0; u < p->units; ++u) {
                y[at * (size_t)p->units + (size_t)u] = hn[u];
            }
        }
    }
}
