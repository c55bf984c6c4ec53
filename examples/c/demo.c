/* Links the step anneal exported for examples/c/adamw_clip.anneal, runs it for 10 steps
 * on the reference problem (tensors of 5 and 1027 floats starting at
 * 0.1*((7i + 3t) mod 11) - 0.5, gradient 2(p - 0.25)), and compares every parameter after
 * every step with the values anneal's interpreter printed for the same recipe.
 *
 *   anneal export examples/c/adamw_clip.anneal --target c -o build/c --reference 10
 *   gcc -O2 -I build/c examples/c/demo.c build/c/adamw_clip.o -lm -o build/c/demo
 *   build/c/demo build/c/adamw_clip.reference.txt
 */
#include <stdio.h>
#include "adamw_clip.h"

#define STEPS 10

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s REFERENCE.txt (from anneal export --reference 10)\n", argv[0]);
        return 2;
    }
    FILE *ref = fopen(argv[1], "r");
    if (!ref) {
        perror(argv[1]);
        return 2;
    }
    size_t numel[2] = {5, 1027};
    float *params[2], *grads[2];
    for (size_t t = 0; t < 2; t++) {
        params[t] = malloc(numel[t] * sizeof(float));
        grads[t] = malloc(numel[t] * sizeof(float));
        if (!params[t] || !grads[t]) return 2;
        for (size_t i = 0; i < numel[t]; i++)
            params[t][i] = 0.1f * (float)((7 * i + 3 * t) % 11) - 0.5f;
    }
    adamw_clip_hypers hp;
    adamw_clip_default_hypers(&hp);
    adamw_clip_state st;
    if (adamw_clip_init(&st, &hp, 2, numel, params) != 0) return 2;
    double worst = 0;
    size_t checked = 0;
    for (int k = 1; k <= STEPS; k++) {
        for (size_t t = 0; t < 2; t++)
            for (size_t i = 0; i < numel[t]; i++) grads[t][i] = 2.0f * (params[t][i] - 0.25f);
        if (adamw_clip_step(&st, &hp, 2, numel, params, (const float *const *)grads) != 0) return 2;
        for (size_t t = 0; t < 2; t++)
            for (size_t i = 0; i < numel[t]; i++) {
                int step;
                size_t rt, ri;
                double want;
                if (fscanf(ref, "%d %zu %zu %lf", &step, &rt, &ri, &want) != 4 || step != k || rt != t || ri != i) {
                    fprintf(stderr, "%s does not match the reference problem at step %d\n", argv[1], k);
                    return 2;
                }
                double diff = fabs(params[t][i] - want);
                double tol = 1e-6 + 1e-5 * fabs(want);
                if (diff > worst) worst = diff;
                if (diff > tol) {
                    fprintf(stderr, "step %d, tensor %zu, element %zu: C %.9g, anneal %.9g\n", k, t, i, params[t][i], want);
                    return 1;
                }
                checked++;
            }
    }
    printf("%zu values over %d steps match anneal (largest difference %.3g); scale %g\n", checked, STEPS, worst, st.s0_scale);
    adamw_clip_free(&st);
    fclose(ref);
    return 0;
}
