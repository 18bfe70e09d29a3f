/* Includes the template file named by TK_TEMPLATE once per dtype, with TK_DT
 * set to f32, f16 and bf16 in turn. Include it after defining TK_TEMPLATE. */
#define TK_DT f32
#include TK_TEMPLATE
#undef TK_DT
#define TK_DT f16
#include TK_TEMPLATE
#undef TK_DT
#define TK_DT bf16
#include TK_TEMPLATE
#undef TK_DT
#undef TK_TEMPLATE
