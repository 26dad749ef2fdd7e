/* A compiled test: C printing TAP with printf, built by meson. */
#include <stdio.h>
#include <stdlib.h>

static int n;

static void check(int cond, const char *desc)
{
    printf("%s %d - %s\n", cond ? "ok" : "not ok", ++n, desc);
    fflush(stdout);
}

int main(void)
{
    printf("1..4\n");
    check(2 + 2 == 4, "addition");
    check(17 / 5 == 3, "integer division truncates");
    check(-17 % 5 == -2, "remainder takes the sign of the dividend");
    check(abs(-9) == 9, "abs");
    return 0;
}
