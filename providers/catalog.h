/*
 * catalog.h - what each cloud offers: regions with their jurisdiction,
 * accelerator classes mapped to the provider's own instance types or
 * presets, object-storage endpoints, the Terraform provider to pin.
 *
 * The catalog is data, dated ("as_of"), read at run time from
 * providers/catalog/<name>.json so it can be corrected without a rebuild. Where
 * it lives: $RH_CATALOG_DIR, else <bindir>/catalog (the build tree), else
 * <bindir>/../share/rehydra/catalog (installed), else the source tree this
 * file was compiled from. The Terraform modules are found the same way
 * ($RH_TEMPLATES_DIR, <bindir>/templates, <bindir>/../share/rehydra/templates,
 * the source tree's templates/).
 *
 * Accelerator status: "available" (mapped, with regions), "unverified" (the
 * provider sells it but the mapping needs target.instance_type), or
 * "unavailable" (with the reason). Nothing unmapped is invented.
 *
 * Ownership: json_t results are new references (caller decrefs) unless a
 * function says "borrowed".
 */
#ifndef RH_CATALOG_H
#define RH_CATALOG_H

#include <jansson.h>

/* *out is a new string: the directory holding `kind` ("catalog",
 * "templates" or "policy", the last with $RH_POLICY_DIR and
 * providers/policy in the source tree). RH_ENOTFOUND says where it looked and which variable to
 * set. */
int rh_data_dir(char **out, const char *kind);

/* Loads and validates <catalog dir>/<provider>.json. *out is new.
 * RH_ENOTFOUND when there is no such file, RH_EINVAL naming the file and
 * the JSON path of the first problem. */
int rh_catalog_load(json_t **out, const char *provider);

/* Checks one catalog document (already parsed); `file` names it in
 * messages. Returns 0 or RH_EINVAL. */
int rh_catalog_check(const json_t *cat, const char *file);

/* The accelerator class table (accelerators.json). *out is new. */
int rh_catalog_classes(json_t **out);

/* Borrowed region entry, or RH_ENOTFOUND listing the known regions. */
int rh_catalog_region(const json_t **out, const json_t *cat, const char *region);

/* Borrowed accelerator entry usable in `region`: RH_ENOTFOUND for an unknown
 * class, RH_EUNSUPPORTED when unavailable (the reason) or not offered in that
 * region (the regions that have it, and the classes this region has). An
 * "unverified" entry is returned as it is: the caller decides. */
int rh_catalog_accelerator(const json_t **out, const json_t *cat, const char *cls,
			   const char *region);

#endif
