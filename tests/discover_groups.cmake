# Lists the tests of a gtest program and writes CTest's file for them, in groups: each group is
# one process that runs up to GROUP_SIZE tests of one suite, named <suite>, or <suite>:<k>/<n>
# where the suite takes n groups. Run after each link of the program (tests/CMakeLists.txt):
#
#   cmake -DTEST_EXECUTABLE=... -DCTEST_FILE=... -DGROUP_SIZE=8 -DTIMEOUT=1800
#         -DENVIRONMENT=OMP_WAIT_POLICY=PASSIVE -P discover_groups.cmake
#
# Why groups: a process that links LibTorch takes 0.6-0.9 s to start here, before its first
# test, and one process a test started it 786 times (README, "The test suite": the times).
foreach(var TEST_EXECUTABLE CTEST_FILE GROUP_SIZE TIMEOUT ENVIRONMENT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "discover_groups.cmake: ${var} is not set")
  endif()
endforeach()

# The listing runs under the tests' environment, so that the program need not re-execute itself.
string(REGEX MATCH "^([^=]+)=(.*)$" _ "${ENVIRONMENT}")
set(ENV{${CMAKE_MATCH_1}} "${CMAKE_MATCH_2}")
execute_process(COMMAND "${TEST_EXECUTABLE}" --gtest_list_tests
  OUTPUT_VARIABLE listing ERROR_VARIABLE errors RESULT_VARIABLE status TIMEOUT 120)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} --gtest_list_tests failed (${status}):\n${errors}")
endif()

# "Suite." lines, then their tests indented; the parameters' comments ("  # GetParam() = ...",
# which may hold brackets, quotes and semicolons) are dropped before the text becomes a list.
string(REGEX REPLACE "  #[^\n]*" "" listing "${listing}")
string(REPLACE ";" "" listing "${listing}")
string(REPLACE "\n" ";" lines "${listing}")
set(suites)
foreach(line IN LISTS lines)
  if(line MATCHES "^([^ ]+)\\.$")
    set(suite "${CMAKE_MATCH_1}")
    list(APPEND suites "${suite}")
    set(tests_${suite})
  elseif(line MATCHES "^  ([^ ]+)$")
    list(APPEND tests_${suite} "${CMAKE_MATCH_1}")
  endif()
endforeach()

set(text "# Written by tests/discover_groups.cmake from ${TEST_EXECUTABLE} --gtest_list_tests\n")
set(count 0)
foreach(suite IN LISTS suites)
  list(LENGTH tests_${suite} n)
  math(EXPR groups "(${n} + ${GROUP_SIZE} - 1) / ${GROUP_SIZE}")
  foreach(g RANGE 1 ${groups})
    math(EXPR first "(${g} - 1) * ${GROUP_SIZE}")
    list(SUBLIST tests_${suite} ${first} ${GROUP_SIZE} members)
    if(groups EQUAL 1)
      set(name "${suite}")
      set(filter "${suite}.*")
    else()
      set(name "${suite}:${g}/${groups}")
      list(TRANSFORM members PREPEND "${suite}.")
      list(JOIN members ":" filter)
    endif()
    string(APPEND text
      "add_test([==[${name}]==] [==[${TEST_EXECUTABLE}]==] [==[--gtest_filter=${filter}]==])\n"
      "set_tests_properties([==[${name}]==] PROPERTIES TIMEOUT ${TIMEOUT} SKIP_RETURN_CODE 77"
      " ENVIRONMENT [==[${ENVIRONMENT}]==])\n")
    math(EXPR count "${count} + 1")
  endforeach()
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} lists no tests")
endif()
file(WRITE "${CTEST_FILE}" "${text}")
