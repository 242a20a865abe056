# Ingest benchmark (issue 5): pmingest ingest against 256 hash-partitioned JudySL arrays
# filled by omp parallel for (bench/judy_baseline.c), same HDF5 file, same io/ reader.
#   bench/ingest_vs_judy.sh BUILD_DIR [RECORDS] [REPEATS]
find_path(PME_JUDY_INCLUDE_DIR Judy.h)
find_library(PME_JUDY_LIBRARY Judy)
if(PME_JUDY_INCLUDE_DIR AND PME_JUDY_LIBRARY AND TARGET pmio)
  add_executable(judy_baseline ${CMAKE_CURRENT_LIST_DIR}/judy_baseline.c)
  target_include_directories(judy_baseline SYSTEM PRIVATE ${PME_JUDY_INCLUDE_DIR})
  target_include_directories(judy_baseline PRIVATE ${PROJECT_SOURCE_DIR}/engine) # pme_malloc.h
  target_link_libraries(judy_baseline PRIVATE pmio ${PME_JUDY_LIBRARY} xxhash
    OpenMP::OpenMP_C pm_flags)
  if(JEMALLOC_FOUND)
    target_link_libraries(judy_baseline PRIVATE PkgConfig::JEMALLOC) # same allocator
  endif()
else()
  message(STATUS "judy_baseline: Judy.h or libJudy not found, baseline not built")
endif()
