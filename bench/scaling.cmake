# scal_baselines: the baselines of the scaling study (bench/scaling/baselines.c), read the same
# HDF5 input as `pmingest ingest` and time single-map, clone+merge, mutex and 256 JudySL
# builds at a given thread count. Driven by bench/scaling/sweep.py. Needs libJudy
# (libjudy-dev); skipped with a message when it is missing.
find_path(PM_SCAL_JUDY_INCLUDE_DIR Judy.h)
find_library(PM_SCAL_JUDY_LIBRARY Judy)
if(PM_SCAL_JUDY_INCLUDE_DIR AND PM_SCAL_JUDY_LIBRARY AND TARGET pmio)
  add_executable(scal_baselines ${CMAKE_CURRENT_LIST_DIR}/scaling/baselines.c)
  target_include_directories(scal_baselines SYSTEM PRIVATE ${PM_SCAL_JUDY_INCLUDE_DIR})
  target_include_directories(scal_baselines PRIVATE ${PROJECT_SOURCE_DIR}/engine) # pme_malloc.h
  target_link_libraries(scal_baselines PRIVATE pathmap pmio OpenMP::OpenMP_C
    ${PM_SCAL_JUDY_LIBRARY} ${CMAKE_DL_LIBS} pm_flags)
  if(JEMALLOC_FOUND)
    # Same allocator as pmingest: jemalloc replaces malloc for the whole process. A build
    # with -DPM_JEMALLOC=OFF gives the glibc variant (sweep.py --glibc-build).
    target_link_libraries(scal_baselines PRIVATE PkgConfig::JEMALLOC)
  endif()
else()
  message(STATUS "scal_baselines: Judy.h, libJudy or io/ missing, not built")
endif()
