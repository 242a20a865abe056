# The SLURM job scripts of configs/slurm/ on a real one-node SLURM started by the test itself
# (munged, slurmctld, slurmd in a temporary directory; see tests/slurm/run_slurm_test.sh).
# Label slurm. Installs slurm-wlm, munge and python3-matplotlib with apt-get when missing;
# skipped (exit 77) only when that is impossible (not root, no package source).
if(TARGET pmingest AND PM_SANITIZE STREQUAL "")
  add_test(NAME slurm_jobs
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/run_slurm_test.sh
      $<TARGET_FILE:pmingest> ${PROJECT_SOURCE_DIR})
  set_tests_properties(slurm_jobs PROPERTIES
    LABELS "slurm"
    TIMEOUT 600
    SKIP_RETURN_CODE 77)
endif()
