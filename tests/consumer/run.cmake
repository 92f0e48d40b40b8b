# Installs the torchae build into a staging prefix, then configures, builds and runs the
# consumer project against it. Run by CTest as `cmake -P`.
set(stage "${WORK_DIR}/stage")
set(build "${WORK_DIR}/build")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install "${TORCHAE_BUILD_DIR}" --prefix "${stage}")
set(launcher "")
if(COMPILER_LAUNCHER)
  set(launcher "-DCMAKE_CXX_COMPILER_LAUNCHER=${COMPILER_LAUNCHER}")
endif()
run(${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${build}" -DCMAKE_PREFIX_PATH=${stage}
    -DCMAKE_BUILD_TYPE=Release ${launcher})
run(${CMAKE_COMMAND} --build "${build}")
run("${build}/consumer")
