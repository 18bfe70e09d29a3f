/* The AMX tile configuration (palette 1) that _tile_loadconfig reads: bytes
 * per row and rows of each of the 16 tiles; and the int8 product's blocking
 * (amx.c), which tk_qgemm_amx_scratch (variants.c) sizes the scratch by. */
#ifndef TK_QGEMM_AMX_TILES_H
#define TK_QGEMM_AMX_TILES_H

#include <stdint.h>

typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tk_tile_config;

/* rows a group, k bytes a pass, channels a chunk when k takes several passes */
#define TK_AMX_MC 128
#define TK_AMX_KC 4096
#define TK_AMX_NB 512
/* int32 between partial-sum rows: a cache line more than a chunk's channels,
 * so a tile's 16 rows do not share one L1 set */
#define TK_AMX_PART_STRIDE (TK_AMX_NB + 16)

#endif
