/* The floor of bench/run: bare libcurl multi sending the same recall
 * requests as the client (batches of 20 keys, N in flight, keep-alive,
 * TLS verified against the CA) with no validation and no parsing: the
 * JSON bodies are pre-built strings and the answers are thrown away
 * (only the HTTP status is counted).
 *
 *   cc -O2 -o floor bench/floor.c -lcurl
 *   BENCH_TOKEN=... ./floor URL CA_FILE KEYS CID ROBOT [CONCURRENCY]
 *
 * Prints one JSON line; exits 1 when an answer was not a 200. */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 20
#define MAX_CONC 64

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "floor: out of memory\n");
        exit(1);
    }
    return p;
}

/* Reads the keys file (one key per line) into an array of strings. */
static char **read_keys(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    char **keys = NULL, *line = NULL;
    size_t n = 0, cap = 0, lcap = 0;
    ssize_t len;
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    while ((len = getline(&line, &lcap, f)) != -1) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            keys = realloc(keys, cap * sizeof *keys);
            if (keys == NULL) {
                fprintf(stderr, "floor: out of memory\n");
                exit(1);
            }
        }
        keys[n] = xmalloc((size_t)len + 1);
        memcpy(keys[n++], line, (size_t)len + 1);
    }
    free(line);
    fclose(f);
    *count = n;
    return keys;
}

/* One JSON body per batch, built before the clock starts. */
static char **build_bodies(char **keys, size_t nkeys, const char *cid, const char *robot, size_t *nbodies)
{
    size_t nb = (nkeys + BATCH - 1) / BATCH, b, i;
    char **bodies = xmalloc(nb * sizeof *bodies);
    for (b = 0; b < nb; b++) {
        size_t first = b * BATCH, last = first + BATCH < nkeys ? first + BATCH : nkeys;
        size_t cap = strlen(cid) + strlen(robot) + 80, off;
        char *s;
        for (i = first; i < last; i++)
            cap += strlen(keys[i]) + 3;
        s = xmalloc(cap);
        off = (size_t)sprintf(s, "{\"openConversationId\":\"%s\",\"robotCode\":\"%s\",\"processQueryKeys\":[",
                              cid, robot);
        for (i = first; i < last; i++)
            off += (size_t)sprintf(s + off, "%s\"%s\"", i > first ? "," : "", keys[i]);
        strcpy(s + off, "]}");
        bodies[b] = s;
    }
    *nbodies = nb;
    return bodies;
}

int main(int argc, char **argv)
{
    const char *url_base, *ca, *cid, *robot, *token;
    char url[1024], tokhdr[1024];
    char **keys, **bodies;
    size_t nkeys, nbodies, next = 0, done = 0, bad = 0, i;
    int conc = 8, running = 0;
    CURLM *multi;
    CURL *easy[MAX_CONC];
    struct curl_slist *hdrs = NULL;
    double t0, elapsed;

    if (argc < 6) {
        fprintf(stderr, "usage: BENCH_TOKEN=... floor URL CA_FILE KEYS CID ROBOT [CONCURRENCY]\n");
        return 2;
    }
    url_base = argv[1];
    ca = argv[2];
    cid = argv[4];
    robot = argv[5];
    if (argc > 6)
        conc = atoi(argv[6]);
    if (conc < 1 || conc > MAX_CONC)
        conc = 8;
    token = getenv("BENCH_TOKEN");
    if (token == NULL)
        token = "sim-static-token";
    snprintf(url, sizeof url, "%s/v1.0/robot/groupMessages/recall", url_base);
    snprintf(tokhdr, sizeof tokhdr, "x-acs-dingtalk-access-token: %s", token);

    keys = read_keys(argv[3], &nkeys);
    bodies = build_bodies(keys, nkeys, cid, robot, &nbodies);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    hdrs = curl_slist_append(hdrs, tokhdr);
    hdrs = curl_slist_append(hdrs, "Expect:");
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conc);
    for (i = 0; i < (size_t)conc; i++) {
        CURL *h = curl_easy_init();
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(h, CURLOPT_PROXY, "");
        easy[i] = h;
    }

    t0 = now();
    for (i = 0; i < (size_t)conc && next < nbodies; i++) {
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDSIZE, (long)strlen(bodies[next]));
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, bodies[next++]);
        curl_multi_add_handle(multi, easy[i]);
    }
    while (done < nbodies) {
        CURLMsg *msg;
        int left;
        curl_multi_perform(multi, &running);
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            CURL *h;
            long status = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            h = msg->easy_handle;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200) {
                if (bad++ == 0)
                    fprintf(stderr, "floor: %s (HTTP %ld)\n", curl_easy_strerror(msg->data.result), status);
            }
            done++;
            curl_multi_remove_handle(multi, h);
            if (next < nbodies) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(bodies[next]));
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, bodies[next++]);
                curl_multi_add_handle(multi, h);
            }
        }
        if (done < nbodies)
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    elapsed = now() - t0;

    printf("{\"contender\":\"floor\",\"keys\":%zu,\"requests\":%zu,\"bad\":%zu,\"elapsed\":%.3f}\n",
           nkeys, nbodies, bad, elapsed);
    for (i = 0; i < (size_t)conc; i++)
        curl_easy_cleanup(easy[i]);
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    curl_global_cleanup();
    for (i = 0; i < nbodies; i++)
        free(bodies[i]);
    free(bodies);
    for (i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    return bad ? 1 : 0;
}
