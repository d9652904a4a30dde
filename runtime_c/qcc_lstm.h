/* qcc runtime: TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM as TFLM's integer kernel computes it (int8 input, output and
 * hidden state, int16 cell state and gates; qcc/numerics/tflm_lstm.py states the arithmetic step by step). */
#ifndef QCC_LSTM_H
#define QCC_LSTM_H

#include <stdint.h>

/* Gates in the order forget, input, cell, output. Matrix products: acc = acc_const[g][u] + sum(w * x) in int32
 * (wrapping, as TFLM's), acc_const holding the bias and the zero-point terms; requantized to Q3.12 by TFLM's
 * MultiplyByQuantizedMultiplier (M0, e), wrapping where its C++ does. */
typedef struct {
    int32_t batch, steps, features, units;
    int32_t time_major;                  /* 1: x and y are (steps, batch, .); 0: (batch, steps, .) */
    const int8_t *input_weights;         /* [4][units][features4]: features4 = features rounded up to 4, zeros after
                                          * the taps, each group of 4 stored in the order 0, 2, 1, 3 */
    const int8_t *recurrent_weights;     /* [4][units][units4], the same */
    const int32_t *input_acc_const;      /* [4][units]: bias - Z_x * sum(w) */
    const int32_t *recurrent_acc_const;  /* [4][units]: -Z_h * sum(r) */
    int32_t input_m0[4], input_e[4];     /* (M0, e) of s_x s_w / 2^-12 per gate */
    int32_t recurrent_m0[4], recurrent_e[4];
    int32_t forget_m0, forget_e;         /* f * c: 2^-15 */
    int32_t input_m0_mul, input_e_mul;   /* i * g: 2^-30 / s_c */
    int32_t hidden_m0, hidden_e;         /* tanh(c) * o: 2^-30 / s_h */
    int32_t hidden_zero;
    int32_t cell_clip;                   /* the cell state clamped to +-cell_clip; 0: not clamped */
    int32_t cell_tanh_multiplier, cell_tanh_shift; /* TANH of the cell state (qcc_sigmoid16_params) */
    const uint16_t *sigmoid_table;       /* [256]: TFLM's table of sigmoid(i / 24) */
} qcc_lstm_params;

/* h and c: the state, updated in place (batch x units each); scratch: 8 * units + features4 + units4 int16,
 * word-aligned. */
void qcc_lstm_s8(const qcc_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c, int8_t *y, int32_t *scratch);

#endif /* QCC_LSTM_H */
