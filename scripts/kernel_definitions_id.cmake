# Writes OUT, a header defining TETRA_KERNEL_DEFINITIONS_ID: a hash of the sources that define and
# schedule kernels (SOURCES, a ;-list). The on-disk kernel cache keys objects by it, so a changed
# template never reuses an object compiled from its old definition.
#   cmake -DOUT=... -DSOURCES=... -P kernel_definitions_id.cmake
set(all "")
list(SORT SOURCES)
foreach(source IN LISTS SOURCES)
  file(SHA256 "${source}" digest)
  string(APPEND all "${digest}")
endforeach()
string(SHA256 id "${all}")
string(SUBSTRING "${id}" 0 16 id)
set(text "#pragma once\n#define TETRA_KERNEL_DEFINITIONS_ID \"${id}\"\n")
# Rewritten only when it changes, so that an unchanged id rebuilds nothing.
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
