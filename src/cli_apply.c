/* pollcast apply DOC.json PATCH.json: applies an RFC 6902 patch and prints the resulting
 * document compactly. Exit 0 on success; 1 when the patch cannot be applied (including a patch
 * that is valid JSON but not an array of operations), with "pollcast apply: op N: reason";
 * 2 on bad usage, an unreadable file, invalid JSON, or a document cJSON cannot hold (a member
 * name with a NUL character). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "cli.h"
#include "json/apply.h"
#include "json/json.h"

int cli_apply(int argc, char **argv)
{
    if (argc != 2 || (argv[0][0] == '-' && argv[0][1] != '\0') ||
        (argv[1][0] == '-' && argv[1][1] != '\0') ||
        (strcmp(argv[0], "-") == 0 && strcmp(argv[1], "-") == 0)) {
        fprintf(stderr, "usage: pollcast apply DOC.json PATCH.json\n");
        return 2;
    }
    int rc = 2;
    cJSON *tree = NULL;
    struct buf out;
    buf_init(&out, 0);
    struct json_doc *patch = NULL;
    struct json_doc *doc = cli_load_json(argv[0]);
    if (doc == NULL)
        goto out;
    char msg[128];
    tree = json_to_cjson(doc->root, msg, sizeof(msg));
    if (tree == NULL) {
        fprintf(stderr, "pollcast: %s: cannot hold this document: %s\n", argv[0], msg);
        goto out;
    }
    /* The fidelity tree is no longer needed once converted; free it before the patch loads. */
    json_doc_free(doc);
    doc = NULL;
    patch = cli_load_json(argv[1]);
    if (patch == NULL)
        goto out;
    struct json_patch_error err;
    if (json_patch_apply(&tree, patch->root, NULL, &err) != 0) {
        fprintf(stderr, "pollcast apply: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    if (json_cjson_write(&out, tree) != 0 || buf_putc(&out, '\n') != 0) {
        fprintf(stderr, "pollcast apply: out of memory\n");
        rc = 1;
        goto out;
    }
    if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        fprintf(stderr, "pollcast apply: cannot write the result\n");
        rc = 1;
        goto out;
    }
    rc = 0;
out:
    buf_dispose(&out);
    cJSON_Delete(tree);
    json_doc_free(doc);
    json_doc_free(patch);
    return rc;
}
