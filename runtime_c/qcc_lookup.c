/* qcc runtime: table lookups (see qcc_lookup.h). */
#include "qcc_lookup.h"

void qcc_lookup_8bit(const uint8_t table[256], const uint8_t *x, uint8_t *y, size_t count)
{
    size_t i;
    for (i = 0; i < count; ++i) {
        y[i] = table[x[i]];
    }
}

void qcc_lookup_channels_8bit(const qcc_lookup_params *p, const uint8_t *x, uint8_t *y)
{
    const size_t inner = (size_t)p->inner;
    int32_t o, c;
    for (o = 0; o < p->outer; ++o) {
        for (c = 0; c < p->channels; ++c) {
            qcc_lookup_8bit(p->tables + (size_t)c * 256u, x, y, inner);
            x += inner;
            y += inner;
        }
    }
}
