/*
 * The schema index behind gRPC server reflection (rpc layer internal; the
 * daemon's copy is loaded by gd_rpc_new, rpc/rpc.h).
 *
 * The build embeds a FileDescriptorSet (protoc --descriptor_set_out
 * --include_imports) of every file that defines a service the daemon
 * serves: graphd/v1/graphd.proto, grpc/health/v1/health.proto and
 * grpc/reflection/v1alpha/reflection.proto. The index parses it once with
 * protobuf-c's code for google/protobuf/descriptor.proto and answers the
 * questions of the reflection protocol: a file by name, the file defining a
 * fully qualified symbol, a file's transitive dependencies, the services.
 *
 * Symbols are the names protobuf's own descriptor pool knows, package
 * qualified and without a leading dot: services ("graphd.v1.SellerGraph"),
 * methods ("graphd.v1.SellerGraph.GetEntity"), messages and nested
 * messages ("pkg.Outer.Inner"), fields and oneofs ("pkg.Msg.field"),
 * enums, and enum values (scoped like their enum's siblings, as in C++:
 * "graphd.v1.ENTITY_TYPE_SELLER").
 *
 * An index is immutable once built: any number of threads may read it.
 */
#ifndef GD_RPC_REFLECTION_H
#define GD_RPC_REFLECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* The embedded FileDescriptorSet (generated from proto/ by proto/embed.py). */
extern const unsigned char gd_descriptor_set[];
extern const size_t gd_descriptor_set_len;

typedef struct gd_refl_index gd_refl_index;

typedef enum {
  GD_REFL_SERVICE,
  GD_REFL_METHOD,
  GD_REFL_MESSAGE,
  GD_REFL_FIELD, /* fields and oneofs */
  GD_REFL_ENUM,
  GD_REFL_ENUM_VALUE,
} gd_refl_kind;

/*
 * Parses a serialised FileDescriptorSet (copied: set may go away) and
 * indexes it. Errors (the message names the file or symbol):
 * GD_EINVALID: not a FileDescriptorSet, a file without a name, the same
 * file or symbol twice, a dependency that is not in the set; GD_ENOMEM.
 * Cost: O(S log S) for S symbols.
 */
int gd_refl_index_build(const uint8_t *set, size_t len, gd_refl_index **ret, gd_err *err);

/* Frees an index. Accepts NULL. */
void gd_refl_index_free(gd_refl_index *ix);

/* Number of files; files are numbered 0..n-1 in the set's order (every
 * file after its dependencies, as protoc writes them). */
size_t gd_refl_nfiles(const gd_refl_index *ix);

/* A file's name ("graphd/v1/graphd.proto") and its serialised
 * FileDescriptorProto; both views live as long as the index. */
const char *gd_refl_file_name(const gd_refl_index *ix, size_t file);
const uint8_t *gd_refl_file_bytes(const gd_refl_index *ix, size_t file, size_t *ret_len);

/* The file called name; false when there is none. O(log n). */
bool gd_refl_find_file(const gd_refl_index *ix, const char *name, size_t *ret_file);

/* The file that defines the fully qualified symbol name, and what kind of
 * symbol it is (ret_kind may be NULL); false when there is none.
 * O(log S). */
bool gd_refl_find_symbol(const gd_refl_index *ix, const char *name, size_t *ret_file,
                         gd_refl_kind *ret_kind);

/*
 * The file and every file it depends on, directly or not: writes their
 * numbers to ret_files (room for gd_refl_nfiles() entries), the file itself
 * first and each file once, and returns how many.
 */
size_t gd_refl_file_closure(const gd_refl_index *ix, size_t file, size_t *ret_files);

/* The services, fully qualified, in the set's order. */
size_t gd_refl_nservices(const gd_refl_index *ix);
const char *gd_refl_service(const gd_refl_index *ix, size_t i);

#endif
