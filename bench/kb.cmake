# kb_bench: KB snapshot files (engine/kb.h) against LMDB (liblmdb-dev) on the same keys and
# values: write MB/s, size on disk, open time, random get p50/p99, scan throughput.
find_path(PKB_LMDB_INCLUDE_DIR lmdb.h)
find_library(PKB_LMDB_LIBRARY lmdb)
if(TARGET pmengine AND PKB_LMDB_INCLUDE_DIR AND PKB_LMDB_LIBRARY)
  add_executable(kb_bench ${CMAKE_CURRENT_LIST_DIR}/kb_bench.c)
  target_include_directories(kb_bench SYSTEM PRIVATE ${PKB_LMDB_INCLUDE_DIR})
  target_link_libraries(kb_bench PRIVATE pmengine ${PKB_LMDB_LIBRARY} pm_flags)
  if(JEMALLOC_FOUND)
    target_link_libraries(kb_bench PRIVATE PkgConfig::JEMALLOC)
  endif()
else()
  message(STATUS "kb_bench: lmdb.h or liblmdb not found, benchmark not built")
endif()
