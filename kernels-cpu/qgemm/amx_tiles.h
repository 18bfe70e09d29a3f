/* The AMX tile configuration (palette 1) that _tile_loadconfig reads: bytes
 * per row and rows of each of the 16 tiles. */
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

#endif
