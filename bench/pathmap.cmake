# pm_bench: the pathmap core (pm_map_set/get/foreach) against JudySL and JudyHS.
# Needs libJudy (libjudy-dev); skipped with a message when it is missing.
find_path(PM_JUDY_INCLUDE_DIR Judy.h)
find_library(PM_JUDY_LIBRARY Judy)
if(PM_JUDY_INCLUDE_DIR AND PM_JUDY_LIBRARY)
  add_executable(pm_bench ${CMAKE_CURRENT_LIST_DIR}/pm_bench.c)
  target_include_directories(pm_bench SYSTEM PRIVATE ${PM_JUDY_INCLUDE_DIR})
  target_link_libraries(pm_bench PRIVATE pathmap ${PM_JUDY_LIBRARY} pm_flags)
  if(JEMALLOC_FOUND)
    # The bench reads jemalloc's own byte count (mallctl stats.allocated).
    target_link_libraries(pm_bench PRIVATE PkgConfig::JEMALLOC)
    target_compile_definitions(pm_bench PRIVATE PM_BENCH_JEMALLOC=1)
  endif()
else()
  message(STATUS "pm_bench: Judy.h or libJudy not found, benchmark not built")
endif()
